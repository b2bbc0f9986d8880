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
-- KEYS, ARGV and the reply codes are declared once, in src/store/interface.rs, and written
-- just above this part as Lua tables (KEY_AT, ARGV_AT, EVENT_ARG_AT, REPLY): `bind` binds
-- every key to its name in K (K.convs, K.by_load…), so no part counts positions.

local K, PREFIX, EVENT_TYPE, NOW, CLOSED_RETENTION
local ASSUMED_TIMEZONE, TODAY, NEXT_MIDNIGHT
-- NOW as the worker wrote it. A Lua number given to redis.call is turned into text with
-- snprintf("%.17g"), a measurable cost on the hot path: text that is at hand, and literals
-- such as '0' and '1', go as they are.
local NOW_TEXT
-- The generation of event records this call writes to (see apply.lua): its number, when it
-- began (us) and how long its key lives (s, text).
local GENERATION, GENERATION_START, GENERATION_TTL_TEXT
-- The event being applied: its `time` in us since the epoch (nil: it has none) as a number
-- and as the worker wrote it, and the digest of its id. Together they are the event's place
-- in the order of each thing it changes (see order.lua).
local EVENT_TIME, EVENT_TIME_TEXT, EVENT_DIGEST

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
-- The settings as stored when the call began (false: none); decoded on first use.
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

-- An output of the event; `sequence` is its place among the decisions about its conversation
-- (or agent), for events about one (see `next_sequence`).
local function emit(event_type, data, sequence)
  outputs[#outputs + 1] = { type = event_type, data = data, q = sequence }
end

-- The next number of the sequence of decisions about a conversation record (or an agent's
-- configuration), kept in the record itself (`q`): the caller saves the record afterwards.
local function next_sequence(record)
  local sequence = (tonumber(record.q) or 0) + 1
  record.q = sequence
  return sequence
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

-- Binds KEYS and the shared ARGV for one call (a batch of one project's events).
local function bind(keys, args)
  if keys_bound_for ~= keys[1] then
    K = {}
    for name, i in pairs(KEY_AT) do K[name] = keys[i] end
    -- "sb:{project}:", the prefix of every key of the project (keys[1] is "<prefix>settings").
    PREFIX = string.sub(keys[1], 1, -9)
    keys_bound_for = keys[1]
  end
  -- The generation keys change name every generation: bound on every call.
  K.events, K.previous_events = keys[KEY_AT.events], keys[KEY_AT.previous_events]
  NOW, NOW_TEXT = tonumber(args[ARGV_AT.now]), args[ARGV_AT.now]
  CLOSED_RETENTION = tonumber(args[ARGV_AT.closed_retention])
  ASSUMED_TIMEZONE = args[ARGV_AT.timezone]
  TODAY = args[ARGV_AT.today]
  NEXT_MIDNIGHT = tonumber(args[ARGV_AT.next_midnight])
  GENERATION = args[ARGV_AT.generation]
  GENERATION_START = tonumber(args[ARGV_AT.generation_start])
  GENERATION_TTL_TEXT = args[ARGV_AT.generation_ttl]
end

-- Resets every per-call cache, once `bind` is done and the call has events to apply;
-- `stored_settings` is the settings key's value (false: none).
local function begin_call(stored_settings)
  NULL = cjson.null
  settings_cache, settings_text = nil, stored_settings
  for _, reset in ipairs(per_call_resets) do reset() end
end

-- Writes back what the call kept in its caches only.
local function end_call()
  for _, finish in ipairs(per_call_finishes) do finish() end
end

-- Binds one event of the batch (its type, time, digest and random seed) and resets every
-- per-event value.
local function begin_event(event_type, time_text, digest, seed)
  EVENT_TYPE = event_type
  EVENT_TIME_TEXT = time_text ~= '' and time_text or nil
  EVENT_TIME = tonumber(EVENT_TIME_TEXT)
  EVENT_DIGEST = digest
  SEED, seeded = seed, false
  outputs, timers = {}, {}
  for _, reset in ipairs(per_event_resets) do reset() end
end
