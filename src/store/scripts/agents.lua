-- agents.lua: agent configuration, eligibility, the pools of eligible agents and the strategies.
-- Part of the `apply` script; uses KEYS agents, status, owned, by_load, by_order, by_pass, meta,
-- passes and no ARGV of its own.
--
-- An agent is in the pools exactly while it may receive a conversation automatically. Every
-- change that can alter that (status, limits, load, settings) calls `refresh`, so choosing an
-- agent is one ZRANGE on a sorted set: O(log n) however large the team.

local agent_cache = {}
local function agent(agent_id)
  local cfg = agent_cache[agent_id]
  if cfg == nil then
    local raw = redis.call('HGET', K.agents, agent_id)
    cfg = raw and cjson.decode(raw) or false
    agent_cache[agent_id] = cfg
  end
  return cfg or nil
end

local function save_agent(agent_id, cfg)
  agent_cache[agent_id] = cfg
  redis.call('HSET', K.agents, agent_id, cjson.encode(cfg))
end

local function load_of(agent_id)
  return redis.call('ZLEXCOUNT', K.owned, agent_range(agent_id))
end

local function status_of(agent_id)
  return redis.call('HGET', K.status, agent_id) or 'offline'
end

local function status_receives(status)
  if status == 'online' then return true end
  if status == 'busy' then return setting('include_busy') end
  return setting('include_offline')
end

local function max_concurrent(cfg)
  return tonumber(cfg.max_concurrent) or 0
end

-- May this agent receive one more conversation automatically?
local function eligible(agent_id, cfg, load)
  if cfg.auto_assign == false then return false end
  local max = max_concurrent(cfg)
  if max <= 0 or load >= max then return false end
  return status_receives(status_of(agent_id))
end

-- Round-robin position: `order`, else insertion order; the insertion sequence breaks ties so
-- every position is distinct (2^20 fits 1M agents beside orders up to 1e9 in a double).
local function order_score(cfg)
  local seq = tonumber(cfg.seq) or 0
  local position = tonumber(cfg.order) or seq
  return position * 1048576 + (seq % 1048576)
end

local function weight_of(cfg)
  return tonumber(cfg.weight) or tonumber(cfg.daily_limit) or 1
end

local function leave_pools(agent_id)
  redis.call('ZREM', K.by_load, agent_id)
  redis.call('ZREM', K.by_order, agent_id)
  redis.call('ZREM', K.by_pass, agent_id)
end

-- Puts the agent into the pools or takes it out, according to its current eligibility.
local function refresh(agent_id)
  local cfg = agent(agent_id)
  local load = load_of(agent_id)
  if not cfg or not eligible(agent_id, cfg, load) then
    leave_pools(agent_id)
    return
  end
  -- least_loaded: ties between equal loads are broken by a random fraction.
  redis.call('ZADD', K.by_load, load + math.random() * 0.999, agent_id)
  redis.call('ZADD', K.by_order, order_score(cfg), agent_id)
  -- weighted: an agent (re)joining starts at the current virtual time, so time spent away
  -- is not paid back as a burst of assignments.
  local pass = tonumber(redis.call('HGET', K.passes, agent_id)) or 0
  local vtime = tonumber(redis.call('HGET', K.meta, 'vtime')) or 0
  if pass < vtime then
    pass = vtime
    redis.call('HSET', K.passes, agent_id, pass)
  end
  redis.call('ZADD', K.by_pass, pass, agent_id)
end

local function refresh_all()
  for _, agent_id in ipairs(redis.call('HKEYS', K.agents)) do refresh(agent_id) end
end

-- The eligible agent the strategy chooses, or nil.
local function pick(strategy)
  if strategy == 'round_robin' then
    local last = redis.call('HGET', K.meta, 'rr_last')
    local next_up
    if last then
      next_up = redis.call('ZRANGE', K.by_order, '(' .. last, '+inf', 'BYSCORE', 'LIMIT', 0, 1)[1]
    end
    return next_up or redis.call('ZRANGE', K.by_order, 0, 0)[1]
  elseif strategy == 'weighted' then
    return redis.call('ZRANGE', K.by_pass, 0, 0)[1]
  end
  return redis.call('ZRANGE', K.by_load, 0, 0)[1]
end

-- Is the agent eligible right now? (The pools hold exactly the eligible agents.)
local function available(agent_id)
  return redis.call('ZSCORE', K.by_load, agent_id) ~= false
end

-- Like `pick`, skipping the agents in `excluded` (a set): the few agents a conversation must
-- not go back to. Scans only as far as the excluded agents reach.
local function pick_excluding(strategy, excluded)
  if next(excluded) == nil then return pick(strategy) end
  local function first_allowed(key, min, max, by_score)
    for offset = 0, 1000 do
      local found
      if by_score then
        found = redis.call('ZRANGE', key, min, max, 'BYSCORE', 'LIMIT', offset, 1)[1]
      else
        found = redis.call('ZRANGE', key, offset, offset)[1]
      end
      if not found then return nil end
      if not excluded[found] then return found end
    end
  end
  if strategy == 'round_robin' then
    local last = redis.call('HGET', K.meta, 'rr_last')
    local found
    if last then found = first_allowed(K.by_order, '(' .. last, '+inf', true) end
    return found or first_allowed(K.by_order, '-inf', '+inf', true)
  elseif strategy == 'weighted' then
    return first_allowed(K.by_pass)
  end
  return first_allowed(K.by_load)
end

-- Advances the strategy's state once `agent_id` was chosen by it.
local function served(agent_id, strategy)
  if strategy == 'round_robin' then
    local cfg = agent(agent_id)
    redis.call('HSET', K.meta, 'rr_last', order_score(cfg))
  elseif strategy == 'weighted' then
    local cfg = agent(agent_id)
    local pass = tonumber(redis.call('ZSCORE', K.by_pass, agent_id)) or 0
    redis.call('HSET', K.meta, 'vtime', pass)
    redis.call('HSET', K.passes, agent_id, pass + 1 / weight_of(cfg))
  end
end
