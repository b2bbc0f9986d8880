-- conversations.lua: conversation records, assignment, the waiting queue and its draining,
-- returning visitors and reply timers.
-- Part of the `apply` script; uses KEYS convs, owned, waiting, meta, closed, visitors,
-- visitor_seen and ARGV now and closed-conversation retention (through the prelude's names).
--
-- A conversation record is JSON: s = state (waiting | open | closed), a = agent (while open, and
-- kept after closing), v = visitor, p = priority, n = arrival number, w = member in `waiting`,
-- an = assignment number (bumped by every assignment), rp = the assignment number the agent
-- replied to, x = agents that let it time out, plus the routing fields (ch, ca, lang, cat,
-- attrs). A record with state closed and no visitor is a tombstone: the conversation was closed
-- before it was created, and a late creation is ignored.

local function conversation(conversation_id)
  local raw = redis.call('HGET', K.convs, conversation_id)
  return raw and cjson.decode(raw) or nil
end

local function save_conversation(conversation_id, record)
  redis.call('HSET', K.convs, conversation_id, cjson.encode(record))
end

local function new_record(data)
  return {
    v = data.visitor_id, p = data.priority or 0,
    n = redis.call('HINCRBY', K.meta, 'arrival_seq', 1),
    ch = data.channel, ca = data.channel_account, lang = data.language,
    cat = data.category, attrs = data.attributes,
  }
end

local function visitor_memory_ms()
  return (tonumber(setting('visitor_memory_days')) or 30) * 86400000
end

-- The agent that last served this visitor, if remembered and still an agent of the project.
local function remembered_agent(visitor_id)
  if not visitor_id then return nil end
  local seen = tonumber(redis.call('ZSCORE', K.visitor_seen, visitor_id))
  if not seen or seen < NOW - visitor_memory_ms() then return nil end
  local agent_id = redis.call('HGET', K.visitors, visitor_id)
  if agent_id and agent(agent_id) then return agent_id end
  return nil
end

local function remember_visitor(visitor_id, agent_id)
  if not visitor_id then return end
  redis.call('HSET', K.visitors, visitor_id, agent_id)
  redis.call('ZADD', K.visitor_seen, NOW, visitor_id)
end

-- Defined in modes.lua (broadcast and custom modes), used here first.
local hold_for_mode, release_hold

-- Assignments a human asked for are not timed: the reply timeout rotates automatic ones.
local UNTIMED = { claimed = true, transferred = true }

-- Gives the conversation to `agent_id` and publishes the assignment.
local function assign(conversation_id, record, agent_id, reason, strategy, previous_agent_id)
  redis.call('ZADD', K.owned, 0, owned_member(agent_id, conversation_id))
  record.s = 'open'
  record.a = agent_id
  record.w = nil
  record.an = (tonumber(record.an) or 0) + 1
  save_conversation(conversation_id, record)
  if strategy then served(agent_id, strategy) end
  refresh(agent_id)
  remember_visitor(record.v, agent_id)
  emit('conversation.assigned', {
    conversation_id = conversation_id, agent_id = agent_id, reason = reason,
    strategy = strategy, previous_agent_id = previous_agent_id,
  })
  local timeout = tonumber(setting('reply_timeout_seconds')) or 0
  if timeout > 0 and not UNTIMED[reason] then
    arm_timer(timeout * 1000, 'reply_timeout:' .. conversation_id .. ':' .. record.an,
      { timer = 'reply_timeout', conversation_id = conversation_id, token = record.an })
  end
end

-- Takes the conversation away from its agent (capacity released); the record keeps the agent.
local function release(conversation_id, record)
  if record.s == 'open' and record.a then
    redis.call('ZREM', K.owned, owned_member(record.a, conversation_id))
    refresh(record.a)
  end
end

-- Puts the conversation in the waiting queue: by priority (higher first), then arrival.
local function enqueue(conversation_id, record, reason)
  local member = string.format('%016d', record.n or 0) .. '|' .. conversation_id
  redis.call('ZADD', K.waiting, -(tonumber(record.p) or 0), member)
  record.s = 'waiting'
  record.a = nil
  record.w = member
  save_conversation(conversation_id, record)
  emit('conversation.queued', { conversation_id = conversation_id, reason = reason })
end

local function why_waiting()
  local mode = setting('mode')
  if mode == 'auto' then return 'no_eligible_agent' end
  return mode
end

-- Assigns the conversation now if the project allocates automatically and an agent is
-- eligible; otherwise it waits. `previous_agent_id` is the agent it is taken from, if any:
-- when it has to wait, that agent's loss is published as `conversation.unassigned`.
local function allocate(conversation_id, record, reason, previous_agent_id, excluded)
  local mode = setting('mode')
  if mode == 'auto' then
    local strategy = setting('new_visitors')
    local agent_id = pick_excluding(strategy, excluded or {})
    if agent_id then
      assign(conversation_id, record, agent_id, reason, strategy, previous_agent_id)
      return
    end
  end
  if previous_agent_id and record.s == 'open' then
    emit('conversation.unassigned', {
      conversation_id = conversation_id, previous_agent_id = previous_agent_id, reason = reason,
    })
  end
  if mode ~= 'auto' and hold_for_mode(conversation_id, record, excluded or {}) then return end
  enqueue(conversation_id, record, why_waiting())
end

-- Assigns with the new-visitor strategy whatever the mode (custom mode's fallback), else waits.
local function assign_by_strategy(conversation_id, record, reason)
  local strategy = setting('new_visitors')
  local agent_id = pick(strategy)
  if agent_id then
    assign(conversation_id, record, agent_id, reason, strategy)
  else
    enqueue(conversation_id, record, 'no_eligible_agent')
  end
end

-- A new conversation: a returning visitor may go back to the agent who served them.
local function allocate_new(conversation_id, record)
  local policy = setting('returning_visitors')
  local original = setting('mode') == 'auto' and remembered_agent(record.v)
  if not original then
    allocate(conversation_id, record, 'new')
  elseif policy == 'original_agent' then
    -- Always that agent, whatever its status or limits (the settings say so).
    assign(conversation_id, record, original, 'returning', nil)
  elseif policy == 'original_agent_if_available' then
    if available(original) then
      assign(conversation_id, record, original, 'returning', nil)
    else
      allocate(conversation_id, record, 'new')
    end
  else
    local agent_id = pick(policy)
    if agent_id then
      assign(conversation_id, record, agent_id, 'returning', policy)
    else
      enqueue(conversation_id, record, why_waiting())
    end
  end
end

-- Hands waiting conversations to eligible agents, head of the queue first, for as long as
-- both exist. Called after every event, so capacity never sits idle beside a waiting chat.
local function drain()
  local mode = setting('mode')
  if mode == 'broadcast' or mode == 'custom' then
    -- Offer or request, a bounded number per event: holding does not use capacity up.
    for _ = 1, 50 do
      local head = redis.call('ZRANGE', K.waiting, 0, 0)[1]
      if not head or redis.call('ZCARD', K.by_load) == 0 then return end
      redis.call('ZREM', K.waiting, head)
      local conversation_id = after_bar(head)
      local record = conversation(conversation_id)
      if record and record.s == 'waiting' then
        record.w = nil
        if not hold_for_mode(conversation_id, record, {}) then
          enqueue(conversation_id, record, why_waiting())
          return
        end
      end
    end
    return
  end
  if mode ~= 'auto' then return end
  local strategy = setting('new_visitors')
  while true do
    local head = redis.call('ZRANGE', K.waiting, 0, 0)[1]
    if not head then return end
    local agent_id = pick(strategy)
    if not agent_id then return end
    redis.call('ZREM', K.waiting, head)
    local conversation_id = after_bar(head)
    local record = conversation(conversation_id)
    if record and record.s == 'waiting' then
      assign(conversation_id, record, agent_id, 'backlog', strategy)
    end
  end
end

local function close(conversation_id, record)
  if record.s == 'waiting' and record.w then
    redis.call('ZREM', K.waiting, record.w)
  end
  release_hold(conversation_id, record)
  release(conversation_id, record)
  record.s = 'closed'
  record.w = nil
  save_conversation(conversation_id, record)
  redis.call('ZADD', K.closed, NOW, conversation_id)
end

-- Forgets conversations closed longer than the retention ago and visitors not served for
-- longer than the visitor memory. Runs on one call in 16 (a random draw) and forgets up to 64
-- of each, so the work per call stays bounded while forgetting outpaces any arrival rate.
local function forget_old()
  if math.random(16) ~= 1 then return end
  local old = redis.call('ZRANGE', K.closed, '-inf', NOW - CLOSED_RETENTION, 'BYSCORE',
    'LIMIT', 0, 64)
  for _, conversation_id in ipairs(old) do
    local record = conversation(conversation_id)
    if record and record.s == 'closed' then
      redis.call('HDEL', K.convs, conversation_id)
    end
    redis.call('ZREM', K.closed, conversation_id)
  end
  local gone = redis.call('ZRANGE', K.visitor_seen, '-inf', NOW - visitor_memory_ms(), 'BYSCORE',
    'LIMIT', 0, 64)
  for _, visitor_id in ipairs(gone) do
    redis.call('HDEL', K.visitors, visitor_id)
    redis.call('ZREM', K.visitor_seen, visitor_id)
  end
end
