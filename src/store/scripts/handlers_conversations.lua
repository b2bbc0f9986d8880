-- handlers_conversations.lua: the handlers of events about conversations (their lifecycle,
-- replies, and the claims, transfers and decisions about them) and of their timers. Adds to
-- `Handlers` and `Timers` (see handlers_agents.lua). Uses KEYS through the modules above.

do
  -- A conversation seen for the first time (created, or a message about it).
  -- A tombstone's successor is `reopened`, as its tombstone's closing is noted.
  local function start_conversation(conversation_id, data, reopened)
    local record = Records.new(data)
    if reopened then Conversations.reopened(conversation_id, record) end
    Records.stamp(record, true, true)
    Conversations.allocate_new(conversation_id, record)
  end

  -- A closed conversation comes back: to its agent if available (or if the settings say to
  -- keep it regardless), else to another agent.
  local function reopen(conversation_id, record)
    Conversations.reopened(conversation_id, record)
    -- Back during its wrap-up: the slot the wrap-up kept is free again, for it or another.
    local wrapping_up = Activity.end_wrap_up(conversation_id, record)
    if wrapping_up then Pools.refresh(wrapping_up) end
    local previous = record.a
    local keep = previous and Agents.config(previous)
      and (Pools.available_for(previous, record)
        or not SETTINGS.reassign_reopened_if_unavailable)
    if keep then
      Conversations.assign(conversation_id, record, previous, 'reopened', nil)
    else
      Conversations.allocate(conversation_id, record, 'reopened', previous,
        previous and { [previous] = true })
    end
  end

  -- The visitor is back on a closed conversation (a message, or a creation published after
  -- the close). A tombstone (closed before it was seen created) starts for real.
  local function come_back(conversation_id, record, data)
    if not record.v then return start_conversation(conversation_id, data, true) end
    Records.stamp(record, true, true)
    reopen(conversation_id, record)
  end

  -- The platform sends again a conversation that overflowed: it is allocated as if new.
  local function send_again(conversation_id, record)
    Records.stamp(record, true, true)
    Conversations.allocate_new(conversation_id, record)
  end

  Handlers['conversation.created'] = function(data)
    local conversation_id = data.conversation_id
    local record = Records.get(conversation_id)
    if not record then return start_conversation(conversation_id, data) end
    local outcome = Records.judge(record, 'lifecycle')
    if outcome ~= 'apply' then return outcome end
    if record.s == 'closed' and EVENT_TIME and EVENT_TIME > (tonumber(record.t) or -1) then
      -- Created after a close published before it: it starts (again).
      return come_back(conversation_id, record, data)
    end
    if record.s == 'overflowed' then return send_again(conversation_id, record) end
    -- Known already (a repeat, or closed before its creation was processed): nothing changes
    -- but its order.
    Records.stamp(record, true, false)
    Records.save(conversation_id, record)
  end

  -- Whether the visitor writing should move the conversation: its owner went offline.
  local function owner_gone(record)
    return SETTINGS.reassign_if_owner_offline and Agents.status(record.a) == 'offline'
  end

  Handlers['message.received'] = function(data)
    local conversation_id = data.conversation_id
    local record = Records.get(conversation_id)
    if not record then return start_conversation(conversation_id, data) end
    local outcome = Records.judge(record, 'lifecycle')
    if outcome ~= 'apply' then return outcome end
    if record.s == 'closed' then return come_back(conversation_id, record, data) end
    if record.s == 'overflowed' then return send_again(conversation_id, record) end
    if record.s == 'open' and record.a and owner_gone(record) then
      -- The owner went offline: the conversation moves to someone available.
      local owner = record.a
      Records.stamp(record, true, true)
      Conversations.release(conversation_id, record)
      return Conversations.allocate(conversation_id, record, 'owner_unavailable', owner,
        { [owner] = true })
    end
    -- Nothing to decide; the message still orders the conversation's lifecycle (a close
    -- published before it, arriving after it, is stale), and keeps it active.
    Records.stamp(record, true, false)
    local counts_again = record.s == 'open' and Activity.visitor_wrote(conversation_id, record)
    Records.save(conversation_id, record)
    if counts_again then Pools.refresh(record.a) end
  end

  Handlers['conversation.closed'] = function(data)
    local conversation_id = data.conversation_id
    local record = Records.get(conversation_id)
    if not record then
      record = { s = 'closed' } -- a tombstone: its creation, when it comes, changes nothing
    else
      local outcome = Records.judge(record, 'lifecycle')
      if outcome ~= 'apply' then return outcome end
      if record.s == 'closed' then
        Records.stamp(record, true, true)
        return Records.save(conversation_id, record)
      end
    end
    Records.stamp(record, true, true)
    Conversations.close(conversation_id, record)
  end

  -- The assigned agent answered: the reply clock of this assignment stops. A reply from an
  -- agent the conversation has moved away from changes nothing.
  Handlers['agent.replied'] = function(data)
    local record = Records.get(data.conversation_id)
    if not record then return end
    local outcome = Records.judge(record, 'assignment')
    if outcome ~= 'apply' then return outcome end
    if record.s == 'open' and record.a == data.agent_id then
      record.rp = record.an
      Records.stamp(record, false, false)
      Records.save(data.conversation_id, record)
    end
    Presence.replied(data.agent_id)
  end

  -- The conversation a timer is about, if the timer still applies: the conversation is in
  -- `state` and its `field` still holds the number the timer was armed with.
  local function timed_conversation(data, state, field)
    local record = Records.get(data.conversation_id)
    if record and record.s == state and tonumber(record[field]) == tonumber(data.token) then
      return record
    end
  end

  -- No reply in time: move to the next eligible agent that has not timed out on it yet; with
  -- nobody else eligible the conversation stays where it is.
  Timers['reply_timeout'] = function(data)
    local conversation_id = data.conversation_id
    local record = timed_conversation(data, 'open', 'an')
    if not record or tonumber(record.rp) == tonumber(data.token) then return end
    if SETTINGS.mode ~= 'auto' then return end
    local current = record.a
    local excluded = { [current] = true }
    for _, agent_id in ipairs(record.x or {}) do excluded[agent_id] = true end
    local strategy = SETTINGS.new_visitors
    local pool = Routing.pool_of(record)
    local next_agent = Pools.choose(pool, strategy, excluded)
    if not next_agent then return end
    record.x = record.x or {}
    record.x[#record.x + 1] = current
    Conversations.release(conversation_id, record)
    Conversations.assign(conversation_id, record, next_agent, 'reply_timeout', strategy, current,
      pool)
    Presence.missed(current)
  end

  -- No visitor message for `inactive_after_seconds`: the conversation stops counting.
  Timers['inactivity'] = function(data)
    local record = timed_conversation(data, 'open', 'it')
    if not record then return end
    local stopped_counting = Activity.timer_fired(data.conversation_id, record)
    Records.save(data.conversation_id, record)
    if stopped_counting then Pools.refresh(record.a) end
  end

  -- The wrap-up after a close is over: its agent has the slot back.
  Timers['wrap_up'] = function(data)
    local record = timed_conversation(data, 'closed', 'wu')
    if not record then return end
    local agent_id = Activity.end_wrap_up(data.conversation_id, record)
    Records.save(data.conversation_id, record)
    if agent_id then Pools.refresh(agent_id) end
  end

  -- A rule step waited long enough: the next, wider step takes over.
  Timers['rule_step'] = function(data)
    local conversation_id = data.conversation_id
    local record = timed_conversation(data, 'waiting', 'tn')
    if not record then return end
    local _, rule = Routing.current_step(record)
    if not Core.has_next_step(record, rule) then return end
    Queues.dequeue(record)
    record.si = (record.si or 1) + 1
    Conversations.allocate(conversation_id, record, 'rule_escalated')
  end

  -- A conversation has waited as long as it may: it overflows.
  Timers['max_wait'] = function(data)
    local record = timed_conversation(data, 'waiting', 'ot')
    if record then Queues.overflow(data.conversation_id, record, 'max_wait') end
  end

  -- Time to look again at a waiting conversation's place.
  Timers['queue_position'] = function(data)
    local record = timed_conversation(data, 'waiting', 'qn')
    if record then Queues.look_again(data.conversation_id, record) end
  end

  -- No decision from the external allocator in time: the new-visitor strategy decides.
  Timers['custom_timeout'] = function(data)
    local conversation_id = data.conversation_id
    local record = timed_conversation(data, 'pending', 'rq')
    if not record then return end
    Modes.release_hold(conversation_id, record)
    Conversations.assign_by_strategy(conversation_id, record, 'new')
  end

  Handlers['timer.fired'] = function(data)
    local handler = Timers[data.timer]
    if handler then handler(data) end
  end

  -- A command that cannot be carried out. It carries the sequence number of the
  -- conversation's last decision (it is judged against that state, and changes nothing).
  local function rejected(reason, data)
    local record = data.conversation_id and Records.get(data.conversation_id)
    Call.emit('command.rejected', {
      reason = reason, conversation_id = data.conversation_id,
      agent_id = data.agent_id or data.to_agent_id,
    }, record and tonumber(record.q) or nil)
  end

  -- How a command about a conversation (claim, transfer, decision) stands against the
  -- conversation's assignment.
  local function judge_command(conversation_id)
    return Records.judge(conversation_id and Records.get(conversation_id), 'assignment')
  end

  -- A claim or transfer may not take an agent past its `max_concurrent` (0 means no automatic
  -- assignment, and sets no bound on what the agent takes by hand), nor past its capacity for
  -- the conversation's channel (`record`, when known).
  local function at_limit(agent_id, cfg, record)
    local max = Core.max_concurrent(cfg)
    if max > 0 and Agents.load(agent_id) >= max then return true end
    return record ~= nil and not Load.channel_room(agent_id, cfg, record.ch)
  end

  Handlers['agent.claim_requested'] = function(data)
    if data.conversation_id then
      local outcome = judge_command(data.conversation_id)
      if outcome ~= 'apply' then return outcome end
    else
      -- "Get next" is about no conversation in particular: an agent's such claims are in
      -- order.
      local claims = 'n|' .. data.agent_id
      local outcome = Versions.judge_thing(claims)
      if outcome ~= 'apply' then return outcome end
      Versions.advance({ claims })
    end
    if not SETTINGS.agent_can_claim then return rejected('claiming_disabled', data) end
    local cfg = Agents.config(data.agent_id)
    if not cfg then return rejected('unknown_agent', data) end
    if at_limit(data.agent_id, cfg) then return rejected('agent_at_limit', data) end
    -- Get next: the best head among the queues of the agent's pools, else the oldest offer
    -- made to it.
    local conversation_id = data.conversation_id or Queues.next_for(data.agent_id, cfg)
      or Modes.oldest_offer(data.agent_id)
    if not conversation_id then return rejected('nothing_waiting', data) end
    local record = Records.get(conversation_id)
    if not record or not record.v then return rejected('unknown_conversation', data) end
    if record.s == 'closed' then return rejected('conversation_closed', data) end
    if record.s == 'open' then return rejected('already_assigned', data) end
    if record.s == 'overflowed' then return rejected('conversation_overflowed', data) end
    if at_limit(data.agent_id, cfg, record) then return rejected('agent_at_limit', data) end
    if record.s == 'waiting' then Queues.dequeue(record, true) end
    Modes.release_hold(conversation_id, record)
    Records.stamp(record, false, true)
    Conversations.assign(conversation_id, record, data.agent_id, 'claimed', nil)
  end

  Handlers['conversation.transfer_requested'] = function(data)
    local outcome = judge_command(data.conversation_id)
    if outcome ~= 'apply' then return outcome end
    if not SETTINGS.agent_can_transfer then return rejected('transfer_disabled', data) end
    local record = Records.get(data.conversation_id)
    if not record or record.s ~= 'open' then return rejected('conversation_not_open', data) end
    local cfg = Agents.config(data.to_agent_id)
    if not cfg then return rejected('unknown_agent', data) end
    if record.a == data.to_agent_id then return rejected('already_assigned', data) end
    if at_limit(data.to_agent_id, cfg, record) then return rejected('agent_at_limit', data) end
    local previous_agent_id = record.a
    Conversations.release(data.conversation_id, record)
    Records.stamp(record, false, true)
    Conversations.assign(data.conversation_id, record, data.to_agent_id, 'transferred', nil,
      previous_agent_id)
  end

  -- The agent hands the conversation back: it waits again in its first place, and goes to
  -- another agent before this one, while another is eligible.
  Handlers['conversation.requeue_requested'] = function(data)
    local outcome = judge_command(data.conversation_id)
    if outcome ~= 'apply' then return outcome end
    if not SETTINGS.agent_can_requeue then return rejected('requeue_disabled', data) end
    local record = Records.get(data.conversation_id)
    if not record or record.s ~= 'open' then return rejected('conversation_not_open', data) end
    local previous_agent_id = record.a
    Conversations.release(data.conversation_id, record)
    Records.stamp(record, false, true)
    record.rx = previous_agent_id
    Call.emit('conversation.unassigned', {
      conversation_id = data.conversation_id, previous_agent_id = previous_agent_id,
      reason = 'requeued',
    }, Call.next_sequence(record))
    Queues.enqueue(data.conversation_id, record, 'requeued')
  end

  -- The external allocator's answer, applied if the conversation still awaits it and the
  -- agent may take it now; a late answer (after the fallback) is rejected.
  Handlers['allocation.decided'] = function(data)
    local outcome = judge_command(data.conversation_id)
    if outcome ~= 'apply' then return outcome end
    local record = Records.get(data.conversation_id)
    if not record or record.s ~= 'pending' then return rejected('no_allocation_pending', data) end
    if not Agents.config(data.agent_id) then return rejected('unknown_agent', data) end
    if not Pools.available_for(data.agent_id, record) then
      return rejected('agent_unavailable', data)
    end
    Modes.release_hold(data.conversation_id, record)
    Records.stamp(record, false, true)
    Conversations.assign(data.conversation_id, record, data.agent_id, 'custom', nil)
  end
end
