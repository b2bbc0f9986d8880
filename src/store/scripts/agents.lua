-- agents.lua: agent configuration and status, and what makes an agent eligible.
-- Part of the function library; uses KEYS agents, status, owned, meta and no ARGV of its own.

local agent_cache
local function agent(agent_id)
  local cfg = agent_cache[agent_id]
  if cfg == nil then
    local raw = redis.call('HGET', K.agents, agent_id)
    cfg = raw and cjson.decode(raw) or false
    agent_cache[agent_id] = cfg
  end
  return cfg or nil
end

-- The counters every call may need, read in one HMGET.
local META_FIELDS = {
  'day', 'level_agents', 'restricted_agents', 'vtime', 'pool_count', 'day_timer', 'arrival_seq',
  'events_generation',
}
local meta_cache
-- Agents' statuses read or written in this call (agent id -> status).
local status_cache
-- Whether this call numbered arrivals (see `next_arrival`).
local arrivals_numbered
per_call_resets[#per_call_resets + 1] = function()
  agent_cache = {}
  status_cache = {}
  meta_cache = {}
  arrivals_numbered = false
  local values = redis.call('HMGET', K.meta, unpack(META_FIELDS))
  for i, field in ipairs(META_FIELDS) do meta_cache[field] = values[i] end
end

local function meta_number(field)
  return tonumber(meta_cache[field]) or 0
end

-- The next arrival number (orders waiting conversations of equal priority). Counted in the
-- cache, and written back once per call: a batch of new conversations costs one write. A call
-- that fails halfway (a bug; Redis keeps the writes made before the error) leaves the counter
-- behind, and later arrivals may share a number: their members in the queues stay distinct
-- (they end with the conversation id), only their order among themselves is by id.
local function next_arrival()
  local n = meta_number('arrival_seq') + 1
  meta_cache.arrival_seq = n
  arrivals_numbered = true
  return n
end
per_call_finishes[#per_call_finishes + 1] = function()
  if arrivals_numbered then
    redis.call('HSET', K.meta, 'arrival_seq', string.format('%d', meta_cache.arrival_seq))
  end
end

-- Counts of agents with a precedence level and with channel restrictions: levels and channel
-- pools only come into play in projects that use them.
local function counted(cfg)
  return (cfg and cfg.priority) and 1 or 0, (cfg and cfg.channels ~= nil) and 1 or 0
end

local function save_agent(agent_id, cfg, previous)
  local levelled_before, restricted_before = counted(previous)
  local levelled, restricted = counted(cfg)
  if levelled ~= levelled_before then
    meta_cache.level_agents = redis.call('HINCRBY', K.meta, 'level_agents', levelled - levelled_before)
  end
  if restricted ~= restricted_before then
    meta_cache.restricted_agents =
      redis.call('HINCRBY', K.meta, 'restricted_agents', restricted - restricted_before)
  end
  agent_cache[agent_id] = cfg or false
  if cfg then
    redis.call('HSET', K.agents, agent_id, cjson.encode(cfg))
  else
    redis.call('HDEL', K.agents, agent_id)
  end
end

local function load_of(agent_id)
  return redis.call('ZLEXCOUNT', K.owned, agent_range(agent_id))
end

local function status_of(agent_id)
  local status = status_cache[agent_id]
  if status == nil then
    status = redis.call('HGET', K.status, agent_id) or 'offline'
    status_cache[agent_id] = status
  end
  return status
end

-- Stores the agent's status (nil: forgets it, for a removed agent), keeping the cache.
local function write_status(agent_id, status)
  if status then
    redis.call('HSET', K.status, agent_id, status)
  else
    redis.call('HDEL', K.status, agent_id)
  end
  status_cache[agent_id] = status or 'offline'
end

local function status_receives(status)
  if status == 'online' then return true end
  if status == 'busy' then return setting('include_busy') end
  return setting('include_offline')
end

local function max_concurrent(cfg)
  return tonumber(cfg.max_concurrent) or 0
end

-- Has the agent received its `daily_limit` of assignments today (the project's local day)?
local function daily_limit_reached(agent_id, cfg)
  local limit = tonumber(cfg.daily_limit)
  return limit ~= nil and (tonumber(redis.call('HGET', K.daily, agent_id)) or 0) >= limit
end

-- Precedence: level 1 is served first; agents outside the levels come after every level.
local OUTSIDE = 1001
local OUTSIDE_TEXT = '1001'
local BUCKET = 1e11
local function bucket(cfg)
  return tonumber(cfg.priority) or OUTSIDE
end

-- Round-robin position: `order`, else insertion order; the insertion sequence breaks ties so
-- every position is distinct (below 1e11 for orders up to 2e7).
local function order_position(cfg)
  local seq = tonumber(cfg.seq) or 0
  local position = tonumber(cfg.order) or seq
  return position * 4096 + (seq % 4096)
end

local function weight_of(cfg)
  return tonumber(cfg.weight) or tonumber(cfg.daily_limit) or 1
end
