-- handlers.lua: one function per inbound event type, called with the event's checked data.
-- Part of the function library; uses every KEY through the functions above and ARGV now.
-- A handler returns nil when the event was applied (whatever it decided), or 'stale' or
-- 'duplicate' when it was not (see order.lua): then it has changed nothing.

local handlers = {}

-- A merge patch of settings: each setting is a thing of its own, so a patch that is older than
-- the last change of one setting still applies to the others.
handlers['project.configured'] = function(patch)
  local things = {}
  for field in pairs(patch) do things[#things + 1] = 'c|' .. field end
  read_versions(things)
  local previous_mode = setting('mode')
  local current = settings()
  local outcomes, changed = {}, {}
  for field, value in pairs(patch) do
    local outcome = judge_thing('c|' .. field)
    outcomes[outcome] = true
    if outcome == 'apply' then
      if value == NULL then current[field] = nil else current[field] = value end
      changed[#changed + 1] = 'c|' .. field
    end
  end
  if #things > 0 and #changed == 0 then return combined_outcome(outcomes) end
  advance_things(changed)
  if next(current) == nil then
    redis.call('DEL', K.settings)
  else
    redis.call('SET', K.settings, cjson.encode(current))
  end
  settings_cache = current
  -- include_busy / include_offline change who is eligible: rebuild the pools once.
  refresh_all()
  if setting('mode') ~= previous_mode then requeue_held() end
end

-- Takes every open conversation from the agent and assigns each to another agent, or queues it
-- (publishing `conversation.unassigned`).
local function hand_over(agent_id, reason)
  for _, conversation_id in ipairs(take_agent_members(K.owned, agent_id)) do
    local record = conversation(conversation_id)
    if record then
      allocate(conversation_id, record, reason, agent_id, { [agent_id] = true })
    end
  end
  refresh(agent_id)
end

local function set_status(agent_id, status)
  write_status(agent_id, status)
  if not refresh(agent_id) then withdraw_offers(agent_id) end
  if status == 'offline' and setting('release_on_offline') and agent(agent_id) then
    hand_over(agent_id, 'owner_unavailable')
  end
end

-- Whether an event about an agent that does not exist now comes before its removal (a
-- removal's version speaks for everything the agent had).
local function before_removal(agent_id)
  if agent(agent_id) then return false end
  local removed_at = version_of('r|' .. agent_id)
  return removed_at ~= nil and EVENT_TIME ~= nil and EVENT_TIME < removed_at
end

handlers['agent.status_changed'] = function(data)
  local agent_id = data.agent_id
  local status = 's|' .. agent_id
  read_versions({ status, 'r|' .. agent_id })
  if before_removal(agent_id) then return 'stale' end
  local outcome = judge_thing(status)
  if outcome ~= 'apply' then return outcome end
  set_status(agent_id, data.status)
  advance_things({ status })
end

-- Applies what the agent's schedule says now (`state`, computed by the worker: online, and
-- when that next changes) and arms the timer for that change. A status set by hand stands until
-- then. `sched_n` numbers the schedule's timers: an older timer, or one of a replaced schedule,
-- finds another number and does nothing. The switch is an event about the agent's status at
-- the boundary's time (a timer's `time` is when it was due): a status set by hand later than
-- that stands.
local function apply_schedule(agent_id, cfg, state)
  cfg.sched_n = (tonumber(cfg.sched_n) or 0) + 1
  local status = state.online and 'online' or 'offline'
  local status_thing = 's|' .. agent_id
  local sequence
  if status_of(agent_id) ~= status and judge_thing(status_thing) == 'apply' then
    set_status(agent_id, status)
    advance_things({ status_thing })
    sequence = next_sequence(cfg)
  end
  save_agent(agent_id, cfg, cfg)
  if sequence then
    emit('agent.status_changed', { agent_id = agent_id, status = status, reason = 'schedule' },
      sequence)
  end
  local next_ms = tonumber(state.next_ms)
  if next_ms then
    arm_timer(math.max(next_ms - NOW, 0), 'schedule:' .. agent_id .. ':' .. cfg.sched_n,
      { timer = 'schedule', agent_id = agent_id, token = cfg.sched_n, schedule = cfg.schedule })
  end
end

-- What an agent's configuration holds besides its fields: the insertion sequence, the number
-- of its schedule's timers and the sequence of its published status changes.
local INTERNAL_AGENT_FIELDS = { seq = true, sched_n = true, q = true }

-- One agent's patch. Each field is a thing of its own: a field changed later than this event
-- keeps its value. Returns nil (applied), 'stale' or 'duplicate'.
local function upsert_agent(patch)
  local agent_id = patch.agent_id
  if before_removal(agent_id) then return 'stale' end
  local previous = agent(agent_id)
  local outcomes, changed, applied = {}, {}, {}
  for field in pairs(patch) do
    -- `_schedule` is the worker's note of what the schedule says now, not a field.
    if field ~= 'agent_id' and field ~= '_schedule' then
      local thing = 'f|' .. agent_id .. '|' .. field
      local outcome = judge_thing(thing)
      outcomes[outcome] = true
      if outcome == 'apply' then
        changed[#changed + 1] = thing
        applied[field] = true
      end
    end
  end
  local upserted = 'u|' .. agent_id
  if next(outcomes) == nil then
    -- A patch without fields: creates the agent, or repeats an earlier one.
    outcomes[judge_thing(upserted)] = true
  end
  if previous and #changed == 0 then return combined_outcome(outcomes) end
  local cfg = {}
  for field, value in pairs(previous or { seq = redis.call('HINCRBY', K.meta, 'agent_seq', 1) }) do
    cfg[field] = value
  end
  for field in pairs(applied) do
    local value = patch[field]
    if value == NULL then cfg[field] = nil else cfg[field] = value end
  end
  if previous and bucket(previous) ~= bucket(cfg) then leave_all(agent_id, previous) end
  if applied.schedule and patch.schedule == NULL then
    cfg.sched_n = (tonumber(cfg.sched_n) or 0) + 1 -- its pending timer no longer applies
  end
  save_agent(agent_id, cfg, previous)
  rejoin_pools(agent_id, previous)
  refresh(agent_id)
  changed[#changed + 1] = upserted
  advance_things(changed)
  if applied.schedule and patch._schedule then apply_schedule(agent_id, cfg, patch._schedule) end
end

handlers['agent.upserted'] = function(data)
  -- The versions of every part of the event, in one read.
  local things = {}
  for _, patch in ipairs(data.agents) do
    local agent_id = patch.agent_id
    things[#things + 1] = 'r|' .. agent_id
    things[#things + 1] = 'u|' .. agent_id
    things[#things + 1] = 's|' .. agent_id
    for field in pairs(patch) do
      if field ~= 'agent_id' and field ~= '_schedule' then
        things[#things + 1] = 'f|' .. agent_id .. '|' .. field
      end
    end
  end
  read_versions(things)
  local outcomes = {}
  for _, patch in ipairs(data.agents) do
    outcomes[upsert_agent(patch) or 'apply'] = true
  end
  return combined_outcome(outcomes)
end

-- The agent leaves. When it was upserted again by a later event that came first, what this
-- removal did still happened before that: its conversations are handed over, and the fields
-- and status set before the removal go back to their defaults.
handlers['agent.removed'] = function(data)
  local agent_id = data.agent_id
  local removal, upserted, status = 'r|' .. agent_id, 'u|' .. agent_id, 's|' .. agent_id
  local previous = agent(agent_id)
  local things, fields = { removal, upserted, status }, {}
  for field in pairs(previous or NONE) do
    if not INTERNAL_AGENT_FIELDS[field] then
      fields[field] = 'f|' .. agent_id .. '|' .. field
      things[#things + 1] = fields[field]
    end
  end
  read_versions(things)
  local outcome = judge_thing(removal)
  if outcome ~= 'apply' then return outcome end
  local upserted_at = version_of(upserted)
  if previous and EVENT_TIME and upserted_at and upserted_at > EVENT_TIME then
    withdraw_offers(agent_id)
    hand_over(agent_id, 'agent_removed')
    local cfg, reset = {}, {}
    for field, value in pairs(previous) do
      if fields[field] and not ((version_of(fields[field]) or -1) > EVENT_TIME) then
        reset[#reset + 1] = fields[field]
      else
        cfg[field] = value
      end
    end
    if bucket(previous) ~= bucket(cfg) then leave_all(agent_id, previous) end
    save_agent(agent_id, cfg, previous)
    rejoin_pools(agent_id, previous)
    if not ((version_of(status) or -1) > EVENT_TIME) then
      write_status(agent_id, nil)
      reset[#reset + 1] = status
    end
    refresh(agent_id)
    forget_things(reset)
    advance_things({ removal })
    return
  end
  if previous then leave_all(agent_id, previous) end
  save_agent(agent_id, nil, previous)
  write_status(agent_id, nil)
  redis.call('HDEL', K.passes, agent_id)
  rejoin_pools(agent_id, previous)
  withdraw_offers(agent_id)
  hand_over(agent_id, 'agent_removed')
  -- The removal's version now speaks for everything the agent had.
  local superseded = { upserted, status }
  for _, thing in pairs(fields) do superseded[#superseded + 1] = thing end
  forget_things(superseded)
  advance_things({ removal })
end

-- A conversation seen for the first time (created, or a message about it).
local function start_conversation(conversation_id, data)
  local record = new_record(data)
  stamp(record, true, true)
  allocate_new(conversation_id, record)
end

-- A closed conversation comes back: to its agent if available (or if the settings say to
-- keep it regardless), else to another agent.
local function reopen(conversation_id, record)
  redis.call('ZREM', K.closed, conversation_id)
  local previous = record.a
  local keep = previous and agent(previous)
    and (available(previous) or not setting('reassign_reopened_if_unavailable'))
  if keep then
    assign(conversation_id, record, previous, 'reopened', nil)
  else
    allocate(conversation_id, record, 'reopened', previous, previous and { [previous] = true })
  end
end

-- The visitor is back on a closed conversation (a message, or a creation published after the
-- close). A tombstone (closed before it was seen created) starts for real.
local function come_back(conversation_id, record, data)
  if not record.v then
    redis.call('ZREM', K.closed, conversation_id)
    return start_conversation(conversation_id, data)
  end
  stamp(record, true, true)
  reopen(conversation_id, record)
end

handlers['conversation.created'] = function(data)
  local conversation_id = data.conversation_id
  local record = conversation(conversation_id)
  if not record then return start_conversation(conversation_id, data) end
  local outcome = judge_conversation(record, 'lifecycle')
  if outcome ~= 'apply' then return outcome end
  if record.s == 'closed' and EVENT_TIME and EVENT_TIME > (tonumber(record.t) or -1) then
    -- Created after a close published before it: it starts (again).
    return come_back(conversation_id, record, data)
  end
  -- Known already (a repeat, or closed before its creation was processed): nothing changes
  -- but its order.
  stamp(record, true, false)
  save_conversation(conversation_id, record)
end

-- Whether the visitor writing should move the conversation: its owner went offline.
local function owner_gone(record)
  return setting('reassign_if_owner_offline') and status_of(record.a) == 'offline'
end

handlers['message.received'] = function(data)
  local conversation_id = data.conversation_id
  local record = conversation(conversation_id)
  if not record then return start_conversation(conversation_id, data) end
  local outcome = judge_conversation(record, 'lifecycle')
  if outcome ~= 'apply' then return outcome end
  if record.s == 'closed' then return come_back(conversation_id, record, data) end
  if record.s == 'open' and record.a and owner_gone(record) then
    -- The owner went offline: the conversation moves to someone available.
    local owner = record.a
    stamp(record, true, true)
    release(conversation_id, record)
    return allocate(conversation_id, record, 'owner_unavailable', owner, { [owner] = true })
  end
  -- Nothing to decide; the message still orders the conversation's lifecycle (a close
  -- published before it, arriving after it, is stale).
  stamp(record, true, false)
  save_conversation(conversation_id, record)
end

handlers['conversation.closed'] = function(data)
  local conversation_id = data.conversation_id
  local record = conversation(conversation_id)
  if not record then
    record = { s = 'closed' } -- a tombstone: its creation, when it comes, changes nothing
  else
    local outcome = judge_conversation(record, 'lifecycle')
    if outcome ~= 'apply' then return outcome end
    if record.s == 'closed' then
      stamp(record, true, true)
      return save_conversation(conversation_id, record)
    end
  end
  stamp(record, true, true)
  close(conversation_id, record)
end

-- The assigned agent answered: the reply clock of this assignment stops. A reply from an
-- agent the conversation has moved away from changes nothing.
handlers['agent.replied'] = function(data)
  local record = conversation(data.conversation_id)
  if not record then return end
  local outcome = judge_conversation(record, 'assignment')
  if outcome ~= 'apply' then return outcome end
  if record.s == 'open' and record.a == data.agent_id then
    record.rp = record.an
    stamp(record, false, false)
    save_conversation(data.conversation_id, record)
  end
end

local timer_handlers = {}

-- The conversation a timer is about, if the timer still applies: the conversation is in
-- `state` and its `field` still holds the number the timer was armed with.
local function timed_conversation(data, state, field)
  local record = conversation(data.conversation_id)
  if record and record.s == state and tonumber(record[field]) == tonumber(data.token) then
    return record
  end
end

-- No reply in time: move to the next eligible agent that has not timed out on it yet; with
-- nobody else eligible the conversation stays where it is.
timer_handlers['reply_timeout'] = function(data)
  local conversation_id = data.conversation_id
  local record = timed_conversation(data, 'open', 'an')
  if not record or tonumber(record.rp) == tonumber(data.token) then return end
  if setting('mode') ~= 'auto' then return end
  local current = record.a
  local excluded = { [current] = true }
  for _, agent_id in ipairs(record.x or {}) do excluded[agent_id] = true end
  local strategy = setting('new_visitors')
  local pool = pool_of(record)
  local next_agent = choose(pool, strategy, excluded)
  if not next_agent then return end
  record.x = record.x or {}
  record.x[#record.x + 1] = current
  release(conversation_id, record)
  assign(conversation_id, record, next_agent, 'reply_timeout', strategy, current, pool)
end

-- A rule step waited long enough: the next, wider step takes over.
timer_handlers['rule_step'] = function(data)
  local conversation_id = data.conversation_id
  local record = timed_conversation(data, 'waiting', 'tn')
  if not record then return end
  local _, rule = current_step(record)
  if not rule or not rule.route_to[(record.si or 1) + 1] then return end
  dequeue(record)
  record.si = (record.si or 1) + 1
  allocate(conversation_id, record, 'rule_escalated')
end

-- No decision from the external allocator in time: the new-visitor strategy decides.
timer_handlers['custom_timeout'] = function(data)
  local conversation_id = data.conversation_id
  local record = timed_conversation(data, 'pending', 'rq')
  if not record then return end
  release_hold(conversation_id, record)
  assign_by_strategy(conversation_id, record, 'new')
end

-- A schedule boundary: the agent switches as its schedule says, and the next switch is armed.
timer_handlers['schedule'] = function(data)
  local cfg = agent(data.agent_id)
  if not cfg or tonumber(cfg.sched_n) ~= tonumber(data.token) or not data._schedule then return end
  apply_schedule(data.agent_id, cfg, data._schedule)
end

-- Local midnight: nothing to do here, the start of every call already begins the new day.
timer_handlers['new_day'] = function(_) end

handlers['timer.fired'] = function(data)
  local handler = timer_handlers[data.timer]
  if handler then handler(data) end
end

-- A command that cannot be carried out. It carries the sequence number of the conversation's
-- last decision (it is judged against that state, and changes nothing).
local function rejected(reason, data)
  local record = data.conversation_id and conversation(data.conversation_id)
  emit('command.rejected', {
    reason = reason, conversation_id = data.conversation_id,
    agent_id = data.agent_id or data.to_agent_id,
  }, record and tonumber(record.q) or nil)
end

-- How a command about a conversation (claim, transfer, decision) stands against the
-- conversation's assignment.
local function judge_command(conversation_id)
  return judge_conversation(conversation_id and conversation(conversation_id), 'assignment')
end

-- A claim or transfer may not take an agent past its `max_concurrent` (0 means no automatic
-- assignment, and sets no bound on what the agent takes by hand).
local function at_limit(agent_id, cfg)
  local max = max_concurrent(cfg)
  return max > 0 and load_of(agent_id) >= max
end

handlers['agent.claim_requested'] = function(data)
  if data.conversation_id then
    local outcome = judge_command(data.conversation_id)
    if outcome ~= 'apply' then return outcome end
  else
    -- "Get next" is about no conversation in particular: an agent's such claims are in order.
    local claims = 'n|' .. data.agent_id
    local outcome = judge_thing(claims)
    if outcome ~= 'apply' then return outcome end
    advance_things({ claims })
  end
  if not setting('agent_can_claim') then return rejected('claiming_disabled', data) end
  local cfg = agent(data.agent_id)
  if not cfg then return rejected('unknown_agent', data) end
  if at_limit(data.agent_id, cfg) then return rejected('agent_at_limit', data) end
  local conversation_id = data.conversation_id
  if not conversation_id then
    -- Get next: the best head among the queues of the pools the agent belongs to, else the
    -- oldest offer made to this agent. A head whose conversation no longer waits there (a
    -- call that failed halfway can leave one) is taken out of the queues, and the next tried.
    local queues = { BASE.waiting }
    for _, id in ipairs(memberships_of(data.agent_id)) do
      queues[#queues + 1] = requirement_pool(id).waiting
    end
    for _ = 1, 100 do
      local head, head_score, head_queue
      for _, key in ipairs(queues) do
        local member, score = head_of(key)
        if member and (not head or score < head_score or (score == head_score and member < head)) then
          head, head_score, head_queue = member, score, key
        end
      end
      if not head then break end
      local record = conversation(after_bar(head))
      if record and record.s == 'waiting' and record.w == head then
        conversation_id = after_bar(head)
        break
      end
      queue_remove(head_queue, head)
    end
    if not conversation_id then
      local min, max = agent_range(data.agent_id)
      local offered = redis.call('ZRANGE', K.offers, min, max, 'BYLEX', 'LIMIT', 0, 1)[1]
      if not offered then return rejected('nothing_waiting', data) end
      conversation_id = after_bar(offered)
    end
  end
  local record = conversation(conversation_id)
  if not record or not record.v then return rejected('unknown_conversation', data) end
  if record.s == 'closed' then return rejected('conversation_closed', data) end
  if record.s == 'open' then return rejected('already_assigned', data) end
  if record.s == 'waiting' then dequeue(record) end
  release_hold(conversation_id, record)
  stamp(record, false, true)
  assign(conversation_id, record, data.agent_id, 'claimed', nil)
end

handlers['conversation.transfer_requested'] = function(data)
  local outcome = judge_command(data.conversation_id)
  if outcome ~= 'apply' then return outcome end
  if not setting('agent_can_transfer') then return rejected('transfer_disabled', data) end
  local record = conversation(data.conversation_id)
  if not record or record.s ~= 'open' then return rejected('conversation_not_open', data) end
  local cfg = agent(data.to_agent_id)
  if not cfg then return rejected('unknown_agent', data) end
  if record.a == data.to_agent_id then return rejected('already_assigned', data) end
  if at_limit(data.to_agent_id, cfg) then return rejected('agent_at_limit', data) end
  local previous_agent_id = record.a
  release(data.conversation_id, record)
  stamp(record, false, true)
  assign(data.conversation_id, record, data.to_agent_id, 'transferred', nil, previous_agent_id)
end

-- The external allocator's answer, applied if the conversation still awaits it and the agent
-- may take it now; a late answer (after the fallback) is rejected.
handlers['allocation.decided'] = function(data)
  local outcome = judge_command(data.conversation_id)
  if outcome ~= 'apply' then return outcome end
  local record = conversation(data.conversation_id)
  if not record or record.s ~= 'pending' then return rejected('no_allocation_pending', data) end
  if not agent(data.agent_id) then return rejected('unknown_agent', data) end
  if not available(data.agent_id) then return rejected('agent_unavailable', data) end
  release_hold(data.conversation_id, record)
  stamp(record, false, true)
  assign(data.conversation_id, record, data.agent_id, 'custom', nil)
end
