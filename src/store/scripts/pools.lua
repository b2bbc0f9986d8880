-- pools.lua: pools of eligible agents, and choosing one by strategy and precedence level.
-- Part of the function library; uses KEYS by_load, by_order, by_pass, online, base_waiting,
-- pools, memberships, passes, meta and no ARGV of its own.
--
-- A pool holds the agents that may serve one requirement (the skills and channels of a rule
-- step, the conversation's channel when some agents only serve some channels); the base pool
-- has no requirement. Each pool is sorted sets: eligible agents by load, by round-robin
-- position and by weighted pass (eligible = may take one more conversation now), and agents
-- online whatever their load (for precedence levels), plus the pool's waiting conversations.
-- Scores start with the agent's level bucket, so one level is one score range. Every change
-- that alters an agent's eligibility calls `refresh`, which updates the base pool and the pools
-- the agent belongs to: choosing is then a ZRANGE, O(log n) however large the team.

-- `pass` is the prefix of the per-level pass sets; the base pool's set for agents outside the
-- levels (all agents, in a project without levels) is the declared key K.by_pass.
local BASE

local function requirement_pool(id)
  local key = PREFIX .. 'rq:' .. id .. ':'
  return {
    id = id, load = key .. 'load', order = key .. 'order', pass = key .. 'pass',
    online = key .. 'online', waiting = key .. 'waiting',
  }
end

local function pool_by_id(id)
  if id == nil or id == 'base' then return BASE end
  return requirement_pool(id)
end

-- Pools changed by this event, whose waiting conversations may now find an agent.
local touched
-- Pools found with no eligible agent in this call (pool id -> true), until an agent becomes
-- eligible in them: while a project is at capacity, each new conversation of a batch would
-- otherwise ask Redis again.
local nobody_eligible
local base_bound_for
per_call_resets[#per_call_resets + 1] = function()
  nobody_eligible = {}
  -- Like K, rebuilt only when the project changes.
  if base_bound_for ~= PREFIX then
    BASE = {
      id = 'base', load = K.by_load, order = K.by_order, pass = PREFIX .. 'pool:pass',
      online = K.online, waiting = K.base_waiting,
    }
    base_bound_for = PREFIX
  end
  BASE.waiting = meta_number('pool_count') == 0 and K.waiting or K.base_waiting
end
per_event_resets[#per_event_resets + 1] = function() touched = {} end

local function has_all(list, needed)
  if not needed or #needed == 0 then return true end
  local have = {}
  for _, v in ipairs(list or {}) do have[v] = true end
  for _, v in ipairs(needed) do
    if not have[v] then return false end
  end
  return true
end

local function receives_from(cfg, channel)
  if cfg.channels == nil then return true end
  for _, c in ipairs(cfg.channels) do
    if c == channel then return true end
  end
  return false
end

-- Does the agent meet the requirement (skills s, step channels sc, conversation channel ch or
-- channel account ca)?
local function qualifies(cfg, req)
  if not has_all(cfg.skills, req.s) then return false end
  for _, channel in ipairs(req.sc or {}) do
    if not receives_from(cfg, channel) then return false end
  end
  if (req.ch or req.ca) and cfg.channels ~= nil then
    if not ((req.ch and receives_from(cfg, req.ch)) or (req.ca and receives_from(cfg, req.ca))) then
      return false
    end
  end
  return true
end

local function memberships_of(agent_id)
  if meta_number('pool_count') == 0 then return NONE end
  local raw = redis.call('HGET', K.memberships, agent_id)
  return raw and cjson.decode(raw) or {}
end

local function set_memberships(agent_id, ids)
  if #ids == 0 then
    redis.call('HDEL', K.memberships, agent_id)
  else
    redis.call('HSET', K.memberships, agent_id, cjson.encode(ids))
  end
end

-- The weighted-pass set of one precedence bucket of a pool.
local function pass_key(pool, level)
  if pool == BASE and level == OUTSIDE then return K.by_pass end
  return pool.pass .. ':' .. level
end

-- Takes the agent out of the pool (`cfg` says which bucket its pass is in).
local function leave(pool, agent_id, cfg)
  redis.call('ZREM', pool.load, agent_id)
  redis.call('ZREM', pool.order, agent_id)
  redis.call('ZREM', pool.online, agent_id)
  if cfg then redis.call('ZREM', pass_key(pool, bucket(cfg)), agent_id) end
end

-- Where one agent stands in one pool now, as `agent_state` tells it.
local function place(pool, agent_id, cfg, online, eligible, load, pass)
  touched[pool.id] = pool
  if eligible then nobody_eligible[pool.id] = nil end
  if not online then
    leave(pool, agent_id, cfg)
    return
  end
  local level = bucket(cfg)
  local offset = level * BUCKET
  redis.call('ZADD', pool.online, level == OUTSIDE and OUTSIDE_TEXT or level, agent_id)
  if eligible then
    -- least_loaded: ties between equal loads are broken by a random fraction.
    redis.call('ZADD', pool.load, offset + load + random() * 0.999, agent_id)
    redis.call('ZADD', pool.order, offset + order_position(cfg), agent_id)
    redis.call('ZADD', pass_key(pool, level), pass, agent_id)
  else
    redis.call('ZREM', pool.load, agent_id)
    redis.call('ZREM', pool.order, agent_id)
    redis.call('ZREM', pass_key(pool, level), agent_id)
  end
end

-- The agent's eligibility now, as four values (no table, since this runs for nearly every
-- event): online (may receive at all), eligible (may take one more), its load and, when
-- eligible, its weighted pass.
local function agent_state(agent_id, cfg)
  if not cfg then return false, false end
  local online = cfg.auto_assign ~= false and max_concurrent(cfg) > 0
    and status_receives(status_of(agent_id))
  local load = load_of(agent_id)
  local eligible = online and load < max_concurrent(cfg)
    and not daily_limit_reached(agent_id, cfg)
  if not eligible then return online, false, load end
  -- weighted: an agent (re)joining starts at the current virtual time, so time spent away is
  -- not paid back as a burst of assignments.
  local pass = tonumber(redis.call('HGET', K.passes, agent_id)) or 0
  local vtime = meta_number('vtime')
  if pass < vtime then
    pass = vtime
    redis.call('HSET', K.passes, agent_id, pass)
  end
  return online, true, load, pass
end

-- Puts the agent into the pools or takes it out, according to its current eligibility.
-- Returns whether it is eligible now (what `available` would then read).
local function refresh(agent_id)
  local cfg = agent(agent_id)
  local online, eligible, load, pass = agent_state(agent_id, cfg)
  place(BASE, agent_id, cfg, online, eligible, load, pass)
  for _, id in ipairs(memberships_of(agent_id)) do
    place(requirement_pool(id), agent_id, cfg, online, eligible, load, pass)
  end
  return eligible == true
end

local function refresh_all()
  for _, agent_id in ipairs(redis.call('HKEYS', K.agents)) do refresh(agent_id) end
end

-- Takes the agent out of every pool, as configured by `cfg` (before a change of its level, or
-- its removal).
local function leave_all(agent_id, cfg)
  leave(BASE, agent_id, cfg)
  for _, id in ipairs(memberships_of(agent_id)) do leave(requirement_pool(id), agent_id, cfg) end
end

-- Recomputes which requirement pools the agent belongs to (its skills or channels changed, or
-- it was removed) and leaves the ones it no longer qualifies for.
local function rejoin_pools(agent_id, previous)
  local cfg = agent(agent_id)
  local old = {}
  for _, id in ipairs(memberships_of(agent_id)) do old[id] = true end
  local ids = {}
  if cfg then
    local pools = redis.call('HGETALL', K.pools)
    for i = 1, #pools, 2 do
      if qualifies(cfg, cjson.decode(pools[i + 1])) then
        ids[#ids + 1] = pools[i]
        old[pools[i]] = nil
      end
    end
  end
  for id in pairs(old) do leave(requirement_pool(id), agent_id, previous or cfg) end
  set_memberships(agent_id, ids)
end

local function sorted_copy(list)
  local copy = {}
  for i, v in ipairs(list or NONE) do copy[i] = v end
  table.sort(copy)
  return copy
end

-- The pool of a requirement, registered and filled with the qualifying agents the first time
-- it is needed (one pass over the team, once per distinct requirement).
local function pool_for(req)
  local canonical = {
    s = sorted_copy(req.s), sc = sorted_copy(req.sc), ch = req.ch or '', ca = req.ca or '',
  }
  if #canonical.s == 0 and #canonical.sc == 0 and canonical.ch == '' and canonical.ca == '' then
    return BASE
  end
  local text = table.concat(canonical.s, '+') .. '/' .. table.concat(canonical.sc, '+')
    .. '/' .. canonical.ch .. '/' .. canonical.ca
  local id = string.sub(redis.sha1hex(text), 1, 16)
  if redis.call('HSETNX', K.pools, id, cjson.encode(req)) == 1 then
    meta_cache.pool_count = redis.call('HINCRBY', K.meta, 'pool_count', 1)
    if BASE.waiting == K.waiting then
      -- The first requirement pool: the base pool gets a queue of its own, which holds every
      -- conversation waiting so far (they were all the base pool's).
      redis.call('ZUNIONSTORE', K.base_waiting, '1', K.waiting)
      BASE.waiting = K.base_waiting
    end
    local pool = requirement_pool(id)
    for _, agent_id in ipairs(redis.call('HKEYS', K.agents)) do
      local cfg = agent(agent_id)
      if qualifies(cfg, req) then
        local ids = { unpack(memberships_of(agent_id)) }
        ids[#ids + 1] = id
        set_memberships(agent_id, ids)
        place(pool, agent_id, cfg, agent_state(agent_id, cfg))
      end
    end
  end
  return requirement_pool(id)
end

-- Is the agent eligible right now (in the base pool)?
local function available(agent_id)
  return redis.call('ZSCORE', K.by_load, agent_id) ~= false
end

-- The first agent the strategy chooses among the pool's eligible agents of one precedence
-- `level` (all of them when nil: a project without levels has everyone outside them),
-- skipping the agents in `excluded` (a set; a conversation's few agents it must not go back to).
-- The first member of `key` scored within [min, max] that `excluded` does not hold.
local function first_allowed(key, min, max, excluded)
  for offset = 0, 1000 do
    local from = offset == 0 and '0' or offset -- as text when it can (see NOW_TEXT)
    local found = redis.call('ZRANGE', key, min, max, 'BYSCORE', 'LIMIT', from, '1')[1]
    if not found then return nil end
    if not excluded[found] then return found end
  end
end

local function pick_in(pool, strategy, excluded, level)
  local min, max, low, high = '-inf', '+inf', nil, nil
  if level then
    low, high = level * BUCKET, (level + 1) * BUCKET
    min, max = low, '(' .. high
  end
  if strategy == 'round_robin' then
    -- Kept as Redis wrote it: Lua's own number formatting keeps only 14 digits.
    local last_text = redis.call('HGET', K.meta, 'rr:' .. pool.id)
    local last = tonumber(last_text)
    local found
    if last and (not low or (last >= low and last < high)) then
      found = first_allowed(pool.order, '(' .. last_text, max, excluded)
    end
    return found or first_allowed(pool.order, min, max, excluded)
  elseif strategy == 'weighted' then
    return first_allowed(pass_key(pool, level or OUTSIDE), '-inf', '+inf', excluded)
  end
  return first_allowed(pool.load, min, max, excluded)
end

-- The agent for a conversation of this pool, by strategy and precedence: only the first level
-- with an agent online serves (`when_full`: the next level also serves while it is full).
-- Agents outside the levels serve only when no level agent is online: then the conversation is
-- offered to all of them, returned as the second value.
local function choose(pool, strategy, excluded)
  if meta_number('level_agents') == 0 then
    -- Every strategy picks among the same eligible agents: none for one, none for all.
    if nobody_eligible[pool.id] then return nil end
    local agent_id = pick_in(pool, strategy, excluded or NONE)
    if not agent_id and not excluded then nobody_eligible[pool.id] = true end
    return agent_id
  end
  excluded = excluded or NONE
  local first = redis.call('ZRANGE', pool.online, '0', '0', 'WITHSCORES')
  if not first[1] then return nil end
  local level = tonumber(first[2])
  while level < OUTSIDE do
    local agent_id = pick_in(pool, strategy, excluded, level)
    if agent_id or setting('priority_overflow') ~= 'when_full' then return agent_id end
    local next_level = redis.call('ZRANGE', pool.online, '(' .. level, '+inf', 'BYSCORE',
      'LIMIT', 0, 1, 'WITHSCORES')
    if not next_level[1] or tonumber(next_level[2]) >= OUTSIDE then return nil end
    level = tonumber(next_level[2])
  end
  local outsiders = {}
  for _, agent_id in ipairs(redis.call('ZRANGE', pool.load, OUTSIDE * BUCKET, '+inf', 'BYSCORE')) do
    if not excluded[agent_id] then outsiders[#outsiders + 1] = agent_id end
  end
  if #outsiders == 0 then return nil end
  return nil, outsiders
end

-- Advances the strategy's state once `agent_id` was chosen by it.
local function served(pool, agent_id, strategy)
  if strategy == 'round_robin' then
    redis.call('HSET', K.meta, 'rr:' .. pool.id,
      bucket(agent(agent_id)) * BUCKET + order_position(agent(agent_id)))
  elseif strategy == 'weighted' then
    local pass = tonumber(redis.call('HGET', K.passes, agent_id)) or 0
    meta_cache.vtime = pass
    redis.call('HSET', K.meta, 'vtime', pass)
    redis.call('HSET', K.passes, agent_id, pass + 1 / weight_of(agent(agent_id)))
  end
end
