-- conversations.lua: conversation records, assignment, the waiting queues and their draining,
-- returning visitors, reply timers and rule-step escalation.
-- Part of the function library; uses KEYS convs, owned, waiting, base_waiting, meta, closed,
-- visitors, visitor_seen, daily, the pools' keys, and ARGV now and closed_retention.
--
-- A conversation record is JSON:
--   s   state: waiting | open | offered (broadcast) | pending (custom) | closed
--   a   agent (while open; kept after closing, for a reopen)
--   v   visitor (absent in a tombstone: closed before it was created; a late creation is
--       ignored)
--   p   priority, n arrival number, w member in the waiting queues, pw the pool whose queue it
--       waits in
--   an  assignment number (bumped by every assignment), rp the assignment the agent replied to,
--       x agents that let it time out, tn rule-step timer number, rq custom request number,
--       o agents it is offered to
--   ri, si  rule and step; ch, ca, lang, cat, attrs the routing fields
--   t   lifecycle version: the latest `time` (us, as text) of a creation, message or close
--       applied to it; ta assignment version: the latest `time` of an event that changed who
--       holds it (creation, close, reopen, claim, transfer, decision); e the digest of the last
--       event applied to it (see order.lua)
--   q   the sequence of decisions published about it (see `next_sequence`)

-- Conversation records read or written in this call, as stored (id -> JSON, false: none). A
-- batch's own conversations are read together up front (`prefetch_conversations`); every
-- write goes through here too, so a read sees exactly what Redis holds. Kept as text: each
-- read decodes a fresh table, which its caller may change.
local conversation_cache
per_call_resets[#per_call_resets + 1] = function() conversation_cache = {} end

local function conversation(conversation_id)
  local raw = conversation_cache[conversation_id]
  if raw == nil then
    raw = redis.call('HGET', K.convs, conversation_id) or false
    conversation_cache[conversation_id] = raw
  end
  return raw and cjson.decode(raw) or nil
end

-- Reads these conversations' records with one HMGET (those not read yet in this call).
local function prefetch_conversations(ids)
  local missing = {}
  for _, id in ipairs(ids) do
    if conversation_cache[id] == nil then missing[#missing + 1] = id end
  end
  if #missing == 0 then return end
  local found = redis.call('HMGET', K.convs, unpack(missing))
  for i, id in ipairs(missing) do conversation_cache[id] = found[i] or false end
end

local function save_conversation(conversation_id, record)
  local raw = cjson.encode(record)
  redis.call('HSET', K.convs, conversation_id, raw)
  conversation_cache[conversation_id] = raw
end

-- How the current event stands against the conversation (nil: none yet): against its
-- lifecycle (creation, message, close) or its assignment (reply, claim, transfer, decision).
local function judge_conversation(record, aspect)
  if not record then return 'apply' end
  return judge(tonumber(aspect == 'assignment' and record.ta or record.t), record.e)
end

-- Notes in the record (which the caller saves) that the current event changed its lifecycle,
-- its assignment, or both: their versions move to the event's time, never back.
local function stamp(record, lifecycle, assignment)
  if EVENT_TIME then
    if lifecycle and not ((tonumber(record.t) or -1) > EVENT_TIME) then
      record.t = EVENT_TIME_TEXT
    end
    if assignment and not ((tonumber(record.ta) or -1) > EVENT_TIME) then
      record.ta = EVENT_TIME_TEXT
    end
  end
  record.e = EVENT_DIGEST
end

local function new_record(data)
  local record = {
    v = data.visitor_id, p = data.priority or 0,
    n = next_arrival(),
    ch = data.channel, ca = data.channel_account, lang = data.language,
    cat = data.category, attrs = data.attributes,
  }
  record.ri = matching_rule(record)
  if record.ri then record.si = 1 end
  return record
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
  redis.call('ZADD', K.visitor_seen, NOW_TEXT, visitor_id)
end

-- Defined in modes.lua (broadcast and custom modes, offers), used here first.
local hold_for_mode, release_hold, offer

-- Assignments a human asked for are not timed: the reply timeout rotates automatic ones.
local UNTIMED = { claimed = true, transferred = true }

-- Gives the conversation to `agent_id` and publishes the assignment. `pool` is the pool the
-- strategy chose in, if a strategy chose.
local function assign(conversation_id, record, agent_id, reason, strategy, previous_agent_id, pool)
  redis.call('ZADD', K.owned, '0', owned_member(agent_id, conversation_id))
  record.s = 'open'
  record.a = agent_id
  record.w = nil
  record.pw = nil
  record.an = (tonumber(record.an) or 0) + 1
  local sequence = next_sequence(record)
  save_conversation(conversation_id, record)
  local today_count = redis.call('HINCRBY', K.daily, agent_id, '1')
  local daily_limit = tonumber((agent(agent_id) or {}).daily_limit)
  if daily_limit and today_count >= daily_limit and meta_cache.day_timer ~= TODAY then
    -- Someone is held back until midnight: a timer then starts the new day (and drains).
    meta_cache.day_timer = TODAY
    redis.call('HSET', K.meta, 'day_timer', TODAY)
    arm_timer(math.max(NEXT_MIDNIGHT - NOW, 0), 'new_day:' .. TODAY, { timer = 'new_day', token = 0 })
  end
  if strategy then served(pool or BASE, agent_id, strategy) end
  refresh(agent_id)
  remember_visitor(record.v, agent_id)
  emit('conversation.assigned', {
    conversation_id = conversation_id, agent_id = agent_id, reason = reason,
    strategy = strategy, previous_agent_id = previous_agent_id,
  }, sequence)
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

-- A member of the queue of every waiting conversation and of its pool's queue, which are one
-- key while the project has no requirement pool (see KEYS 18): added or removed once there.
local function queue_add(pool_queue, score, member)
  redis.call('ZADD', K.waiting, score, member)
  if pool_queue ~= K.waiting then redis.call('ZADD', pool_queue, score, member) end
end

local function queue_remove(pool_queue, member)
  redis.call('ZREM', K.waiting, member)
  if pool_queue ~= K.waiting then redis.call('ZREM', pool_queue, member) end
end

-- Takes the conversation out of the waiting queues.
local function dequeue(record)
  if record.w then queue_remove(pool_by_id(record.pw).waiting, record.w) end
  record.w = nil
  record.pw = nil
end

-- Puts the conversation in the waiting queues (all conversations, and its pool's): by
-- priority (higher first), then arrival. A rule step with a wait arms its escalation timer.
local function enqueue(conversation_id, record, reason, pool)
  dequeue(record)
  pool = pool or pool_of(record)
  local member = string.format('%016d', record.n or 0) .. '|' .. conversation_id
  local priority = tonumber(record.p) or 0
  local score = priority == 0 and '0' or -priority
  queue_add(pool.waiting, score, member)
  record.s = 'waiting'
  record.a = nil
  record.w = member
  record.pw = pool.id
  local step, rule = current_step(record)
  local wait = step and tonumber(step.wait_seconds) or 0
  if wait > 0 and rule.route_to[(record.si or 1) + 1] then
    record.tn = (tonumber(record.tn) or 0) + 1
    arm_timer(wait * 1000, 'rule_step:' .. conversation_id .. ':' .. record.tn,
      { timer = 'rule_step', conversation_id = conversation_id, token = record.tn })
  end
  local sequence = next_sequence(record)
  save_conversation(conversation_id, record)
  emit('conversation.queued', { conversation_id = conversation_id, reason = reason }, sequence)
end

local function why_waiting()
  local mode = setting('mode')
  if mode == 'auto' then return 'no_eligible_agent' end
  return mode
end

-- Assigns the conversation now if the project allocates automatically and an agent is
-- eligible (offering it to the agents outside the precedence levels when only they are
-- online); otherwise it waits. `previous_agent_id` is the agent it is taken from, if any: when
-- it does not go straight to another agent, that agent's loss is published as
-- `conversation.unassigned`.
local function allocate(conversation_id, record, reason, previous_agent_id, excluded)
  local mode = setting('mode')
  local pool = pool_of(record)
  local outsiders
  if mode == 'auto' then
    local strategy = setting('new_visitors')
    local agent_id
    agent_id, outsiders = choose(pool, strategy, excluded)
    if agent_id then
      dequeue(record)
      assign(conversation_id, record, agent_id, reason, strategy, previous_agent_id, pool)
      return
    end
  end
  if previous_agent_id and record.s == 'open' then
    -- Every path below saves the record, with this number in it.
    emit('conversation.unassigned', {
      conversation_id = conversation_id, previous_agent_id = previous_agent_id, reason = reason,
    }, next_sequence(record))
  end
  if outsiders then
    dequeue(record)
    offer(conversation_id, record, outsiders)
    return
  end
  if mode ~= 'auto' and hold_for_mode(conversation_id, record, excluded or {}) then return end
  enqueue(conversation_id, record, why_waiting(), pool)
end

-- Assigns with the new-visitor strategy whatever the mode (custom mode's fallback), else waits.
local function assign_by_strategy(conversation_id, record, reason)
  local strategy = setting('new_visitors')
  local pool = pool_of(record)
  local agent_id = choose(pool, strategy)
  if agent_id then
    assign(conversation_id, record, agent_id, reason, strategy, nil, pool)
  else
    enqueue(conversation_id, record, 'no_eligible_agent', pool)
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
    local pool = pool_of(record)
    local agent_id = choose(pool, policy)
    if agent_id then
      assign(conversation_id, record, agent_id, 'returning', policy, nil, pool)
    else
      allocate(conversation_id, record, 'new')
    end
  end
end

-- The head of a waiting queue: its member and score, or nil.
local function head_of(key)
  local head = redis.call('ZRANGE', key, '0', '0', 'WITHSCORES')
  if not head[1] then return nil end
  return head[1], tonumber(head[2])
end

-- Hands waiting conversations to eligible agents for as long as both exist, in the pools this
-- event touched, best head (priority, then arrival) first. Called after every event, so
-- capacity never sits idle beside a conversation it could serve.
local function drain()
  local mode = setting('mode')
  if mode == 'broadcast' or mode == 'custom' then
    -- Offer or request, a bounded number per event: holding does not use capacity up.
    for _ = 1, 50 do
      local head = redis.call('ZRANGE', K.waiting, '0', '0')[1]
      if not head or redis.call('ZCARD', K.by_load) == 0 then return end
      local conversation_id = after_bar(head)
      local record = conversation(conversation_id)
      if not record or record.s ~= 'waiting' then
        redis.call('ZREM', K.waiting, head)
      else
        dequeue(record)
        if not hold_for_mode(conversation_id, record, {}) then
          enqueue(conversation_id, record, why_waiting())
          return
        end
      end
    end
    return
  end
  if mode ~= 'auto' or next(touched) == nil then return end
  local strategy = setting('new_visitors')
  local candidates = {}
  for id, pool in pairs(touched) do candidates[id] = pool end
  while true do
    local best, best_member, best_score
    for id, pool in pairs(candidates) do
      local member, score = head_of(pool.waiting)
      if not member then
        candidates[id] = nil
      elseif not best or score < best_score or (score == best_score and member < best_member) then
        best, best_member, best_score = pool, member, score
      end
    end
    if not best then return end
    -- Who would take it does not depend on the conversation: a pool with nobody to take its
    -- head is done before the head's record is read.
    local agent_id, outsiders = choose(best, strategy)
    if not agent_id and not outsiders then
      candidates[best.id] = nil
    else
      local conversation_id = after_bar(best_member)
      local record = conversation(conversation_id)
      if not record or record.s ~= 'waiting' then
        queue_remove(best.waiting, best_member)
      elseif agent_id then
        dequeue(record)
        assign(conversation_id, record, agent_id, 'backlog', strategy, nil, best)
      else
        dequeue(record)
        offer(conversation_id, record, outsiders)
      end
    end
  end
end

local function close(conversation_id, record)
  if record.s == 'waiting' then dequeue(record) end
  release_hold(conversation_id, record)
  release(conversation_id, record)
  record.s = 'closed'
  record.w = nil
  save_conversation(conversation_id, record)
  redis.call('ZADD', K.closed, NOW_TEXT, conversation_id)
end

-- Forgets conversations closed longer than the retention ago and visitors not served for
-- longer than the visitor memory. Runs on one call in 16 (by the call's seed) and forgets up to 64
-- of each, so the work per call stays bounded while forgetting outpaces any arrival rate.
local function forget_old()
  -- One call in 16, picked by the worker's random seed (no need to seed the generator).
  if SEED % 16 ~= 0 then return end
  local old = redis.call('ZRANGE', K.closed, '-inf', NOW - CLOSED_RETENTION, 'BYSCORE',
    'LIMIT', 0, 64)
  for _, conversation_id in ipairs(old) do
    local record = conversation(conversation_id)
    if record and record.s == 'closed' then
      redis.call('HDEL', K.convs, conversation_id)
      conversation_cache[conversation_id] = false
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
