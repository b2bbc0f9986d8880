-- conversations.lua: assigning conversations, their release, allocation by mode and strategy,
-- returning visitors, draining the waiting queues, closing, and forgetting old ones.
-- Module `Conversations`; uses KEYS closing, closed, waiting, meta (day_timer) and ARGV now,
-- closed_retention, today, next_midnight (what an agent holds is load.lua's).
--
-- Closed conversations are forgotten in the order they closed: the list `closing` notes
-- "<conversation>|<ms>" at each close (see Core.expired_head). A conversation reopened and
-- closed again has two entries; its record's `z` (set at its first reopening) holds its last
-- closing time, so only the entry of that closing forgets it. An earlier release noted
-- closings in the sorted set `closed`, still forgotten through that set.

do
  -- Assignments a human asked for are not timed: the reply timeout rotates automatic ones.
  local UNTIMED = { claimed = true, transferred = true }
  -- Broadcast and custom modes offer or request at most this many waiting conversations per
  -- event (holding does not use capacity up, so nothing else bounds the loop).
  local HOLDS_PER_EVENT = 50
  -- Old conversations and visitors are forgotten on one event in this many (picked by the
  -- event's seed), at most FORGOTTEN_PER_EVENT of each: bounded work per event, while
  -- forgetting still outpaces any arrival rate.
  local FORGET_EVERY = 16
  local FORGOTTEN_PER_EVENT = 64

  -- Gives the conversation to `agent_id` and publishes the assignment. `pool` is the pool the
  -- strategy chose in, if a strategy chose.
  function Conversations.assign(conversation_id, record, agent_id, reason, strategy,
                                previous_agent_id, pool)
    Load.hold(agent_id, conversation_id, record)
    record.s = 'open'
    record.a = agent_id
    -- The wait, if any, is over. (Cleared only when set: see records.lua.)
    if record.w or record.pw then record.w, record.pw = nil, nil end
    if record.ws or record.ss or record.qp or record.rx then
      record.ws, record.ss, record.qp, record.rx = nil, nil, nil, nil
    end
    record.an = (tonumber(record.an) or 0) + 1
    local sequence = Call.next_sequence(record)
    Activity.assigned(conversation_id, record)
    Records.save(conversation_id, record)
    local today_count = Agents.count_assignment(agent_id)
    local daily_limit = tonumber((Agents.config(agent_id) or NONE).daily_limit)
    if daily_limit and today_count >= daily_limit and Meta.get('day_timer') ~= TODAY then
      -- Someone is held back until midnight: a timer then starts the new day (and drains).
      Meta.set('day_timer', TODAY)
      Call.arm_timer(math.max(NEXT_MIDNIGHT - NOW, 0), 'new_day:' .. TODAY,
        { timer = 'new_day', token = 0 })
    end
    if strategy then Pools.served(pool or Pools.base(), agent_id, strategy) end
    if SETTINGS.tie_break == 'longest_idle' then Agents.note_assignment(agent_id) end
    Pools.refresh_assigned(agent_id, strategy)
    Visitors.remember(record.v, agent_id)
    Call.emit_json(Core.assigned_output(conversation_id, agent_id, reason, strategy,
      previous_agent_id, sequence))
    local timeout = tonumber(SETTINGS.reply_timeout_seconds) or 0
    if timeout > 0 and not UNTIMED[reason] then
      Call.arm_timer(timeout * 1000, 'reply_timeout:' .. conversation_id .. ':' .. record.an,
        { timer = 'reply_timeout', conversation_id = conversation_id, token = record.an })
    end
  end

  -- Takes the conversation away from its agent (capacity released); the record keeps the
  -- agent.
  function Conversations.release(conversation_id, record)
    if record.s == 'open' and record.a then
      Load.drop(conversation_id, record)
      record.iu = nil
      Pools.refresh(record.a)
    end
  end

  -- Takes every conversation from the agent: each open one is assigned to another agent or
  -- queued (publishing `conversation.unassigned`); one in its wrap-up just ends it.
  function Conversations.hand_over(agent_id, reason)
    for _, conversation_id in ipairs(Load.take_all(agent_id)) do
      local record = Records.get(conversation_id)
      if record then
        record.ia, record.iu, record.wu = nil, nil, nil
        if record.s == 'open' then
          Conversations.allocate(conversation_id, record, reason, agent_id, { [agent_id] = true })
        else
          Records.save(conversation_id, record)
        end
      end
    end
    Pools.refresh(agent_id)
  end

  -- Assigns the conversation now if the project allocates automatically and an agent is
  -- eligible (offering it to the agents outside the precedence levels when only they are
  -- online); otherwise it waits. `previous_agent_id` is the agent it is taken from, if any:
  -- when it does not go straight to another agent, that agent's loss is published as
  -- `conversation.unassigned`.
  function Conversations.allocate(conversation_id, record, reason, previous_agent_id, excluded)
    local mode = SETTINGS.mode
    local pool = Routing.pool_of(record)
    local outsiders
    if mode == 'auto' then
      local strategy = SETTINGS.new_visitors
      local agent_id
      agent_id, outsiders = Pools.choose(pool, strategy, excluded)
      if agent_id then
        Queues.dequeue(record, true)
        Conversations.assign(conversation_id, record, agent_id, reason, strategy,
          previous_agent_id, pool)
        return
      end
    end
    if previous_agent_id and record.s == 'open' then
      -- Every path below saves the record, with this number in it.
      Call.emit('conversation.unassigned', {
        conversation_id = conversation_id, previous_agent_id = previous_agent_id,
        reason = reason,
      }, Call.next_sequence(record))
    end
    if outsiders then
      Queues.dequeue(record)
      Modes.offer(conversation_id, record, outsiders)
      return
    end
    if mode ~= 'auto' and Modes.hold(conversation_id, record, excluded or {}) then return end
    Queues.enqueue(conversation_id, record, Queues.why_waiting(), pool)
  end

  -- Assigns with the new-visitor strategy whatever the mode (custom mode's fallback), else
  -- waits.
  function Conversations.assign_by_strategy(conversation_id, record, reason)
    local strategy = SETTINGS.new_visitors
    local pool = Routing.pool_of(record)
    local agent_id = Pools.choose(pool, strategy)
    if agent_id then
      Conversations.assign(conversation_id, record, agent_id, reason, strategy, nil, pool)
    else
      Queues.enqueue(conversation_id, record, 'no_eligible_agent', pool)
    end
  end

  -- A new conversation: a returning visitor may go back to the agent who served them.
  function Conversations.allocate_new(conversation_id, record)
    local policy = SETTINGS.returning_visitors
    local original = SETTINGS.mode == 'auto' and Visitors.remembered_agent(record.v)
    if not original then
      Conversations.allocate(conversation_id, record, 'new')
    elseif policy == 'original_agent' then
      -- Always that agent, whatever its status or limits (the settings say so).
      Conversations.assign(conversation_id, record, original, 'returning', nil)
    elseif policy == 'original_agent_if_available' then
      if Pools.available_for(original, record) then
        Conversations.assign(conversation_id, record, original, 'returning', nil)
      else
        Conversations.allocate(conversation_id, record, 'new')
      end
    else
      local pool = Routing.pool_of(record)
      local agent_id = Pools.choose(pool, policy)
      if agent_id then
        Conversations.assign(conversation_id, record, agent_id, 'returning', policy, nil, pool)
      else
        Conversations.allocate(conversation_id, record, 'new')
      end
    end
  end

  -- Broadcast and custom modes: offers or requests for the waiting conversations, while
  -- anyone is eligible.
  local function hold_waiting()
    for _ = 1, HOLDS_PER_EVENT do
      local head = redis.call('ZRANGE', K.waiting, '0', '0')[1]
      if not head or not Pools.anyone_eligible() then return end
      local conversation_id = Core.after_bar(head)
      local record = Records.get(conversation_id)
      if not record or record.s ~= 'waiting' then
        redis.call('ZREM', K.waiting, head)
      else
        Queues.dequeue(record)
        if not Modes.hold(conversation_id, record, {}) then
          Queues.enqueue(conversation_id, record, Queues.why_waiting())
          return
        end
      end
    end
  end

  -- Hands waiting conversations to eligible agents for as long as both exist, in the pools
  -- this event touched, best head (priority, then arrival) first. Called after every event, so
  -- capacity never sits idle beside a conversation it could serve.
  function Conversations.drain()
    local mode = SETTINGS.mode
    if mode == 'broadcast' or mode == 'custom' then return hold_waiting() end
    local touched = Pools.touched()
    if mode ~= 'auto' or next(touched) == nil then return end
    local strategy = SETTINGS.new_visitors
    local candidates = {}
    for id, pool in pairs(touched) do candidates[id] = pool end
    while true do
      local best, best_member, best_score
      for id, pool in pairs(candidates) do
        local member, score = Queues.head(pool.waiting)
        if not member then
          candidates[id] = nil
        elseif Core.served_before(member, score, best_member, best_score) then
          best, best_member, best_score = pool, member, score
        end
      end
      if not best then return end
      -- Who would take it does not depend on the conversation: a pool with nobody to take its
      -- head is done before the head's record is read.
      local agent_id, outsiders = Pools.choose(best, strategy)
      if not agent_id and not outsiders then
        candidates[best.id] = nil
      else
        local conversation_id = Core.after_bar(best_member)
        local record = Records.get(conversation_id)
        if not record or record.s ~= 'waiting' then
          Queues.remove(best.waiting, best_member)
        elseif agent_id then
          if record.rx == agent_id then
            -- Handed back by this agent: another takes it if one is eligible.
            agent_id = Pools.choose(best, strategy, { [agent_id] = true }) or agent_id
          end
          Queues.dequeue(record, true)
          Conversations.assign(conversation_id, record, agent_id, 'backlog', strategy, nil, best)
        else
          Queues.dequeue(record)
          Modes.offer(conversation_id, record, outsiders)
        end
      end
    end
  end

  function Conversations.close(conversation_id, record)
    if record.s == 'waiting' then Queues.dequeue(record) end
    Modes.release_hold(conversation_id, record)
    if record.s == 'open' and record.a and Activity.closing(conversation_id, record) then
      Pools.refresh(record.a)
    end
    record.s = 'closed'
    record.w = nil
    if record.z then record.z = NOW end
    Records.save(conversation_id, record)
    redis.call('RPUSH', K.closing, conversation_id .. '|' .. NOW_TEXT)
  end

  -- Notes that a closed conversation (or a tombstone's successor) is open again: its entry in
  -- `closing` no longer speaks for it, only the one of its next closing will.
  function Conversations.reopened(conversation_id, record)
    redis.call('ZREM', K.closed, conversation_id)
    record.z = 0
  end

  -- Forgets a closed conversation, ending its wrap-up.
  local function forget(conversation_id, record)
    local agent_id = Activity.end_wrap_up(conversation_id, record)
    if agent_id then Pools.refresh(agent_id) end
    Records.forget(conversation_id)
  end

  -- Forgets conversations closed longer than the retention ago, and visitors not served for
  -- longer than the visitor memory (see FORGET_EVERY).
  function Conversations.forget_old()
    -- Picked by the worker's random seed (no need to seed the generator).
    if Call.seed() % FORGET_EVERY ~= 0 then return end
    local cutoff = NOW - CLOSED_RETENTION
    local ids, closed_at, count = Call.expired_head(K.closing, cutoff, FORGOTTEN_PER_EVENT)
    if count > 0 then
      Records.prefetch(ids)
      for i = 1, count do
        local record = Records.get(ids[i])
        if record and record.s == 'closed' and (not record.z or record.z == closed_at[i]) then
          forget(ids[i], record)
        end
      end
      redis.call('LTRIM', K.closing, count, -1)
    end

    -- An earlier release's closings.
    local old = redis.call('ZRANGE', K.closed, '-inf', cutoff, 'BYSCORE',
      'LIMIT', 0, FORGOTTEN_PER_EVENT)
    for _, conversation_id in ipairs(old) do
      local record = Records.get(conversation_id)
      if record and record.s == 'closed' then forget(conversation_id, record) end
    end
    if #old > 0 then redis.call('ZREM', K.closed, unpack(old)) end
    Visitors.forget_old()
  end
end
