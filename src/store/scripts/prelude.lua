-- prelude.lua: names for KEYS and ARGV, per-call and per-event state, settings and output
-- helpers. First part of the `switchboard` function library (see store/script.rs); later parts
-- use the names bound here. The library is loaded once (FUNCTION LOAD); each batch of events of
-- one project (often a batch of one) is one FCALL of its `apply` function with the KEYS and ARGV
-- below, and each event of a batch is applied as if it had its own call. The library's top
-- level runs once, so every per-call value is an upvalue that `begin_call` sets afresh, and
-- every per-event value one that `begin_event` sets afresh: nothing leaks from one call into
-- the next. What a call caches (settings, agents, counters) is read once per call and kept
-- for its later events: every write to those keys also updates the cache, so an event sees
-- exactly what it would read from Redis.
--
-- KEYS (every key carries the project's hash tag, so one call stays on one cluster slot)
--   1  settings  string  the project's settings, JSON (merge-patched by project.configured)
--   2  agents    hash    agent id -> agent configuration, JSON
--   3  status    hash    agent id -> online | busy | offline
--   4  convs     hash    conversation id -> conversation record, JSON
--   5  owned     zset    "agent|conversation" for every open assignment (score 0, by lex);
--                        an agent's load is the count of its members, so it cannot drift
--   6  waiting   zset    every waiting conversation: "<arrival, 16 digits>|conversation",
--                        score = -priority (claims and `inspect` read it)
--   7  by_load   zset    the base pool (every eligible agent, whatever its skills): score =
--                        bucket * 1e11 + open conversations + random tie-breaker
--   8  by_order  zset    base pool, score = bucket * 1e11 + round-robin position
--   9  by_pass   zset    base pool, agents outside the precedence levels (bucket 1001), score =
--                        weighted-fair virtual pass. Each level has its own pass set,
--                        "<prefix>pool:pass:<level>": a pass is a small fraction, which a bucket
--                        prefix in the score would round away. (bucket = the agent's precedence
--                        level, or 1001 outside the levels)
--   10 meta      hash    counters: agent_seq, arrival_seq, rr_last, vtime
--   11 closed    zset    conversation id -> closing time in ms (forgotten after retention)
--   12 passes    hash    agent id -> virtual pass, kept while the agent is out of the pool
--   13 visitors  hash    visitor id -> agent that last served the visitor
--   14 visitor_seen zset visitor id -> when that agent last served, ms (forgotten after
--                        `visitor_memory_days`)
--   15 held      zset    conversations offered to agents (broadcast) or awaiting an external
--                        decision (custom), score 0
--   16 offers    zset    "agent|conversation" for every standing offer (score 0, by lex)
--   17 online    zset    base pool's agents that are online (whatever their load), score = bucket
--   18 base_waiting zset  waiting conversations of the base pool (members as in `waiting`), once
--                        the project has a requirement pool: until then every waiting
--                        conversation is the base pool's, and `waiting` serves as its queue
--                        (one write per enqueue and dequeue instead of two)
--   19 pools     hash    requirement pool id -> requirement (skills, channels), JSON; each pool
--                        has keys <prefix>rq:<id>:{load,order,pass,online,waiting}, built from
--                        this project's prefix, so they share its hash tag and cluster slot
--   20 memberships hash  agent id -> ids of the requirement pools it qualifies for, JSON
--   21 daily     hash    agent id -> assignments today (the project's day, meta field `day`)
--   22…  event   string  one per event of the batch, in order: the outputs recorded for this
--                        (project, event id), the dedupe record
-- ARGV
--   1  now, ms since epoch 2  random seed (the batch's first event; the next ones count up)
--   3  dedupe TTL, s       4  closed-conversation retention, ms
--   5  the time zone the worker assumed for the project
--   6  today's date in that zone, YYYY-MM-DD (daily limits count per local day)
--   7  the next local midnight in that zone, ms since epoch
--   8… two per event of the batch, in order: the event type, then its data, JSON (checked by
--      the worker)

local K, PREFIX, EVENT_TYPE, NOW, CLOSED_RETENTION
local ASSUMED_TIMEZONE, TODAY, NEXT_MIDNIGHT
-- NOW and the dedupe TTL as the worker wrote them. A Lua number given to redis.call is turned
-- into text with snprintf("%.17g"), a measurable cost on the hot path: text that is at hand,
-- and literals such as '0' and '1', go as they are.
local NOW_TEXT, DEDUPE_TTL_TEXT

-- Later parts that keep per-call state (caches, kept by every write to what they cache) add a
-- function here that resets it; `begin_call` runs them once per call.
local per_call_resets = {}
-- Later parts that keep per-event state add a function here that resets it; `begin_event`
-- runs them before each event of the batch.
local per_event_resets = {}
-- Later parts that write a cached value back once per call instead of once per change add a
-- function here; `end_call` runs them after the batch's last event.
local per_call_finishes = {}

-- cjson.null (the library's top level may not touch cjson: only calls can).
local NULL

-- An empty table that nothing writes to: a default that allocates nothing (every table a call
-- creates is garbage the Lua collector must later sweep, a measurable share of a call).
local NONE = {}

-- Filled in when the library is assembled, from domain::settings::defaults() (store/script.rs).
local DEFAULT_SETTINGS = {}

local settings_cache, outputs, timers
-- The settings as stored when the call began (false: none), read with the batch's event
-- records in one MGET; decoded on first use.
local settings_text

local function settings()
  if settings_cache == nil then
    settings_cache = settings_text and cjson.decode(settings_text) or {}
  end
  return settings_cache
end

local function setting(name)
  local value = settings()[name]
  if value == nil then return DEFAULT_SETTINGS[name] end
  return value
end

local function emit(event_type, data)
  outputs[#outputs + 1] = { type = event_type, data = data }
end

-- Timers the worker arms after this call (RabbitMQ delay queues): each comes back later as a
-- `timer.fired` event with this id and data, and is applied like any other event.
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

-- The settings key the names in K were bound for. The KEYS layout is fixed by this library's
-- version, so the settings key identifies all the others: a worker's consecutive events of one
-- project reuse the table instead of building it again (a measurable share of a call).
local keys_bound_for

-- ARGV's random seed; the generator is seeded with it on first use in a call only, since most
-- calls draw no random number.
local SEED, seeded

local function random(...)
  if not seeded then
    math.randomseed(SEED)
    seeded = true
  end
  return math.random(...)
end

-- Binds KEYS and the shared ARGV for one call (a batch of one project's events) and resets
-- every per-call cache; `stored_settings` is the settings key's value (false: none).
local function begin_call(keys, args, stored_settings)
  if keys_bound_for ~= keys[1] then
    K = {
      settings = keys[1], agents = keys[2], status = keys[3], convs = keys[4],
      owned = keys[5], waiting = keys[6], by_load = keys[7], by_order = keys[8],
      by_pass = keys[9], meta = keys[10], closed = keys[11], passes = keys[12],
      visitors = keys[13], visitor_seen = keys[14], held = keys[15], offers = keys[16],
      online = keys[17], base_waiting = keys[18], pools = keys[19], memberships = keys[20],
      daily = keys[21],
    }
    -- "sb:{project}:", the prefix of every key of the project (keys[1] is "<prefix>settings").
    PREFIX = string.sub(keys[1], 1, -9)
    keys_bound_for = keys[1]
  end
  NOW, NOW_TEXT = tonumber(args[1]), args[1]
  DEDUPE_TTL_TEXT = args[3]
  CLOSED_RETENTION = tonumber(args[4])
  ASSUMED_TIMEZONE = args[5]
  TODAY = args[6]
  NEXT_MIDNIGHT = tonumber(args[7])
  NULL = cjson.null
  settings_cache, settings_text = nil, stored_settings
  for _, reset in ipairs(per_call_resets) do reset() end
end

-- Writes back what the call kept in its caches only.
local function end_call()
  for _, finish in ipairs(per_call_finishes) do finish() end
end

-- Binds one event of the batch (its record key, type and random seed) and resets every
-- per-event value.
local function begin_event(event_key, event_type, seed)
  K.event = event_key
  EVENT_TYPE = event_type
  SEED, seeded = seed, false
  outputs, timers = {}, {}
  for _, reset in ipairs(per_event_resets) do reset() end
end
