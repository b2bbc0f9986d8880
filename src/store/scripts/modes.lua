-- modes.lua: the modes where the machine does not choose. Broadcast offers a conversation to
-- every eligible agent (the first claim wins); custom asks an external allocator and falls
-- back to the new-visitor strategy when no decision comes in time.
-- Part of the function library; uses KEYS held, offers, by_load and ARGV now.

-- Every eligible agent but the excluded ones.
local function eligible_agents(excluded)
  local agents = {}
  for _, agent_id in ipairs(redis.call('ZRANGE', K.by_load, 0, -1)) do
    if not excluded[agent_id] then agents[#agents + 1] = agent_id end
  end
  return agents
end

-- Ends an offer or a pending request (claimed, decided, closed, timed out, mode changed).
release_hold = function(conversation_id, record)
  if record.s ~= 'offered' and record.s ~= 'pending' then return end
  redis.call('ZREM', K.held, conversation_id)
  for _, agent_id in ipairs(record.o or {}) do
    redis.call('ZREM', K.offers, owned_member(agent_id, conversation_id))
  end
  record.o = nil
end

-- Offers the conversation to these agents; the first claim wins.
offer = function(conversation_id, record, agents)
  record.a = nil
  record.s = 'offered'
  record.o = agents
  redis.call('ZADD', K.held, 0, conversation_id)
  for _, agent_id in ipairs(agents) do
    redis.call('ZADD', K.offers, 0, owned_member(agent_id, conversation_id))
  end
  local sequence = next_sequence(record)
  save_conversation(conversation_id, record)
  emit('conversation.offered', { conversation_id = conversation_id, agent_ids = agents }, sequence)
end

-- Offers the conversation (broadcast) or asks for a decision (custom). False when no agent is
-- eligible, so the caller queues it.
hold_for_mode = function(conversation_id, record, excluded)
  local mode = setting('mode')
  if mode ~= 'broadcast' and mode ~= 'custom' then return false end
  local agents = eligible_agents(excluded)
  if #agents == 0 then return false end
  if mode == 'broadcast' then
    offer(conversation_id, record, agents)
    return true
  end
  record.a = nil
  redis.call('ZADD', K.held, 0, conversation_id)
  record.s = 'pending'
  record.rq = (tonumber(record.rq) or 0) + 1
  local candidates = {}
  for i, agent_id in ipairs(agents) do
    candidates[i] = {
      agent_id = agent_id, open = load_of(agent_id), max_concurrent = max_concurrent(agent(agent_id)),
    }
  end
  local sequence = next_sequence(record)
  save_conversation(conversation_id, record)
  emit('allocation.requested', { conversation_id = conversation_id, candidates = candidates },
    sequence)
  local timeout = tonumber(setting('custom_timeout_seconds')) or 10
  arm_timer(math.max(timeout, 1) * 1000, 'custom_timeout:' .. conversation_id .. ':' .. record.rq,
    { timer = 'custom_timeout', conversation_id = conversation_id, token = record.rq })
  return true
end

-- The agent can no longer take offers: its offers are withdrawn, and a conversation left with
-- no agent offered goes back to waiting.
local function withdraw_offers(agent_id)
  for _, conversation_id in ipairs(take_agent_members(K.offers, agent_id)) do
    local record = conversation(conversation_id)
    if record and record.s == 'offered' then
      local left = {}
      for _, offered in ipairs(record.o or {}) do
        if offered ~= agent_id then left[#left + 1] = offered end
      end
      if #left == 0 then
        release_hold(conversation_id, record)
        enqueue(conversation_id, record, 'offer_withdrawn')
      else
        record.o = left
        save_conversation(conversation_id, record)
      end
    end
  end
end

-- The mode changed: offers and pending requests end, and their conversations wait to be
-- handled the new way.
local function requeue_held()
  for _, conversation_id in ipairs(redis.call('ZRANGE', K.held, 0, -1)) do
    local record = conversation(conversation_id)
    if record then
      release_hold(conversation_id, record)
      enqueue(conversation_id, record, why_waiting())
    else
      redis.call('ZREM', K.held, conversation_id)
    end
  end
end
