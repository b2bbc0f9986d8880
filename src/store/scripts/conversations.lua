-- conversations.lua: conversation records, assignment, the waiting queue and its draining.
-- Part of the `apply` script; uses KEYS convs, owned, waiting, meta, closed and ARGV now and
-- closed-conversation retention (through the names the prelude binds).
--
-- A conversation record is JSON: s = state (waiting | open | closed), a = agent (while open, and
-- kept after closing), v = visitor, p = priority, n = arrival number, w = member in `waiting`,
-- plus the routing fields (ch, ca, lang, cat, attrs). A record with state closed and no visitor is
-- a tombstone: the conversation was closed before it was created, and a late creation is ignored.

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

-- Gives the conversation to `agent_id` and publishes the assignment.
local function assign(conversation_id, record, agent_id, reason, strategy, previous_agent_id)
  redis.call('ZADD', K.owned, 0, owned_member(agent_id, conversation_id))
  record.s = 'open'
  record.a = agent_id
  record.w = nil
  save_conversation(conversation_id, record)
  if strategy then served(agent_id, strategy) end
  refresh(agent_id)
  emit('conversation.assigned', {
    conversation_id = conversation_id, agent_id = agent_id, reason = reason,
    strategy = strategy, previous_agent_id = previous_agent_id,
  })
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
-- eligible; otherwise it waits.
local function allocate(conversation_id, record, reason, previous_agent_id)
  if setting('mode') == 'auto' then
    local strategy = setting('new_visitors')
    local agent_id = pick(strategy)
    if agent_id then
      assign(conversation_id, record, agent_id, reason, strategy, previous_agent_id)
      return
    end
  end
  if previous_agent_id then
    emit('conversation.unassigned', {
      conversation_id = conversation_id, previous_agent_id = previous_agent_id, reason = reason,
    })
  end
  enqueue(conversation_id, record, why_waiting())
end

-- Hands waiting conversations to eligible agents, head of the queue first, for as long as
-- both exist. Called after every event, so capacity never sits idle beside a waiting chat.
local function drain()
  if setting('mode') ~= 'auto' then return end
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
  release(conversation_id, record)
  record.s = 'closed'
  record.w = nil
  save_conversation(conversation_id, record)
  redis.call('ZADD', K.closed, NOW, conversation_id)
end

-- Forgets a few conversations closed longer than the retention ago (bounded work per call).
local function forget_old_closed()
  local old = redis.call('ZRANGE', K.closed, '-inf', NOW - CLOSED_RETENTION, 'BYSCORE',
    'LIMIT', 0, 16)
  for _, conversation_id in ipairs(old) do
    local record = conversation(conversation_id)
    if record and record.s == 'closed' then
      redis.call('HDEL', K.convs, conversation_id)
    end
    redis.call('ZREM', K.closed, conversation_id)
  end
end
