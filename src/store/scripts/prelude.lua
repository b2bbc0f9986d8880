-- prelude.lua: names for KEYS and ARGV, per-call caches, settings and output helpers.
-- First part of the `apply` script (see store/script.rs); later parts use the names bound here.
--
-- KEYS (every key carries the project's hash tag, so one script call stays on one cluster slot)
--   1  event     string  outputs recorded for this (project, event id): the dedupe record
--   2  settings  string  the project's settings, JSON (merge-patched by project.configured)
--   3  agents    hash    agent id -> agent configuration, JSON
--   4  status    hash    agent id -> online | busy | offline
--   5  convs     hash    conversation id -> conversation record, JSON
--   6  owned     zset    "agent|conversation" for every open assignment (score 0, by lex);
--                        an agent's load is the count of its members, so it cannot drift
--   7  waiting   zset    every waiting conversation: "<arrival, 16 digits>|conversation",
--                        score = -priority (claims and `inspect` read it)
--   8  by_load   zset    the base pool (every eligible agent, whatever its skills): score =
--                        bucket * 1e11 + open conversations + random tie-breaker
--   9  by_order  zset    base pool, score = bucket * 1e11 + round-robin position
--   10 by_pass   zset    base pool, agents outside the precedence levels (bucket 1001), score =
--                        weighted-fair virtual pass. Each level has its own pass set,
--                        "<prefix>pool:pass:<level>": a pass is a small fraction, which a bucket
--                        prefix in the score would round away. (bucket = the agent's precedence
--                        level, or 1001 outside the levels)
--   11 meta      hash    counters: agent_seq, arrival_seq, rr_last, vtime
--   12 closed    zset    conversation id -> closing time in ms (forgotten after retention)
--   13 passes    hash    agent id -> virtual pass, kept while the agent is out of the pool
--   14 visitors  hash    visitor id -> agent that last served the visitor
--   15 visitor_seen zset visitor id -> when that agent last served, ms (forgotten after
--                        `visitor_memory_days`)
--   16 held      zset    conversations offered to agents (broadcast) or awaiting an external
--                        decision (custom), score 0
--   17 offers    zset    "agent|conversation" for every standing offer (score 0, by lex)
--   18 online    zset    base pool's agents that are online (whatever their load), score = bucket
--   19 base_waiting zset  waiting conversations of the base pool (members as in `waiting`)
--   20 pools     hash    requirement pool id -> requirement (skills, channels), JSON; each pool
--                        has keys <prefix>rq:<id>:{load,order,pass,online,waiting}, built from
--                        this project's prefix, so they share its hash tag and cluster slot
--   21 memberships hash  agent id -> ids of the requirement pools it qualifies for, JSON
--   22 daily     hash    agent id -> assignments today (the project's day, meta field `day`)
-- ARGV
--   1  event type          2  event data, JSON (checked by the worker)
--   3  now, ms since epoch 4  random seed
--   5  dedupe TTL, s       6  closed-conversation retention, ms
--   7  the time zone the worker assumed for the project
--   8  today's date in that zone, YYYY-MM-DD (daily limits count per local day)
--   9  the next local midnight in that zone, ms since epoch

local K = {
  event = KEYS[1], settings = KEYS[2], agents = KEYS[3], status = KEYS[4], convs = KEYS[5],
  owned = KEYS[6], waiting = KEYS[7], by_load = KEYS[8], by_order = KEYS[9],
  by_pass = KEYS[10], meta = KEYS[11], closed = KEYS[12], passes = KEYS[13],
  visitors = KEYS[14], visitor_seen = KEYS[15], held = KEYS[16], offers = KEYS[17],
  online = KEYS[18], base_waiting = KEYS[19], pools = KEYS[20], memberships = KEYS[21],
  daily = KEYS[22],
}
-- "sb:{project}:", the prefix of every key of the project (KEYS[2] is "<prefix>settings").
local PREFIX = string.sub(KEYS[2], 1, -9)
local EVENT_TYPE = ARGV[1]
local NOW = tonumber(ARGV[3])
local DEDUPE_TTL = tonumber(ARGV[5])
local CLOSED_RETENTION = tonumber(ARGV[6])
local ASSUMED_TIMEZONE = ARGV[7]
local TODAY = ARGV[8]
local NEXT_MIDNIGHT = tonumber(ARGV[9])
math.randomseed(tonumber(ARGV[4]))

local NULL = cjson.null

-- Filled in when the script is assembled, from domain::settings::defaults() (store/script.rs).
local DEFAULT_SETTINGS = {}

local settings_cache
local function settings()
  if settings_cache == nil then
    local raw = redis.call('GET', K.settings)
    settings_cache = raw and cjson.decode(raw) or {}
  end
  return settings_cache
end

local function setting(name)
  local value = settings()[name]
  if value == nil then return DEFAULT_SETTINGS[name] end
  return value
end

local outputs = {}
local function emit(event_type, data)
  outputs[#outputs + 1] = { type = event_type, data = data }
end

-- Timers the worker arms after this call (RabbitMQ delay queues): each comes back later as a
-- `timer.fired` event with this id and data, and is applied like any other event.
local timers = {}
local function arm_timer(delay_ms, id, data)
  timers[#timers + 1] = { delay_ms = delay_ms, id = id, data = data }
end

-- "agent|conversation" members of `owned`; '|' cannot appear in an identifier.
local function owned_member(agent_id, conversation_id)
  return agent_id .. '|' .. conversation_id
end

local function after_bar(member)
  return string.sub(member, string.find(member, '|', 1, true) + 1)
end

-- The lex range of one agent's "agent|conversation" members.
local function agent_range(agent_id)
  return '[' .. agent_id .. '|', '[' .. agent_id .. '|\255'
end

-- Removes one agent's members from `key` (owned or offers); returns their conversation ids.
local function take_agent_members(key, agent_id)
  local min, max = agent_range(agent_id)
  local conversation_ids = {}
  for i, member in ipairs(redis.call('ZRANGE', key, min, max, 'BYLEX')) do
    redis.call('ZREM', key, member)
    conversation_ids[i] = after_bar(member)
  end
  return conversation_ids
end
