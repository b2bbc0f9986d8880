-- call.lua: the context of one call and of the event being applied, the settings, and what an
-- event produces (outputs, timers). Module `Call`, after core.lua; the modules after it read
-- the context below (K, NOW, EVENT_TIME…) and call `Call.*`.
--
-- The library is loaded once (FUNCTION LOAD); each batch of events of one project (often a
-- batch of one) is one FCALL of its `apply` function, and each event of a batch is applied as
-- if it had its own call. The library's top level runs once, so every per-call value is an
-- upvalue that `Call.begin_call` sets afresh, and every per-event value one that
-- `Call.begin_event` sets afresh: nothing leaks from one call into the next. What a call caches
-- (settings, agents, counters) is read once per call and kept for its later events: every
-- write to those keys also updates the cache, so an event sees exactly what it would read from
-- Redis.
--
-- KEYS, ARGV and the reply codes are declared once, in src/store/interface.rs, and written
-- above core.lua as Lua tables (KEY_AT, KEY_SUFFIX, ARGV_AT, EVENT_ARG_AT, REPLY): `Call.bind`
-- binds every project key to its name in K (K.convs, K.by_load…), the few a call declares and
-- the others it names from the project's prefix, so no module counts positions. (A module's
-- header lists the project keys it uses by these names, declared or not.)

-- The call: the project's keys by name, their common prefix, and the shared ARGV.
local K, PREFIX, NOW, CLOSED_RETENTION, ASSUMED_TIMEZONE, TODAY, NEXT_MIDNIGHT
-- NOW as the worker wrote it. A Lua number given to redis.call is turned into text with
-- snprintf("%.17g"), a measurable cost on the hot path: text that is at hand, and literals
-- such as '0' and '1', go as they are.
local NOW_TEXT
-- The generation of event records this call writes to (see apply.lua): its number, when it
-- began (us) and how long its key lives (s, text).
local GENERATION, GENERATION_START, GENERATION_TTL_TEXT
-- What this worker writes: '1' (what every release reads) or '2' (records as MessagePack, each
-- agent's load in a key of its own: see records.lua and load.lua).
local LAYOUT
-- The event being applied: its type, its `time` in us since the epoch (nil: it has none) as a
-- number and as the worker wrote it, and the digest of its id (see order.lua).
local EVENT_TYPE, EVENT_TIME, EVENT_TIME_TEXT, EVENT_DIGEST
-- cjson.null (the library's top level may not touch cjson: only calls can).
local NULL
-- An empty table that nothing writes to: a default that allocates nothing (every table a call
-- creates is garbage the Lua collector must later sweep, a measurable share of a call; a cache
-- most calls never fill is NONE until its first entry, made by `with_entry`). A write to it is
-- a bug, and fails the event (see `Call.begin_call`), where it would otherwise leak into every
-- later call.
local NONE = {}
-- Sets `cache[key]` to `value` in a cache that may still be NONE, making the cache then, and
-- returns the cache, which the caller keeps: `statuses = with_entry(statuses, id, status)`.
local function with_entry(cache, key, value)
  if cache == NONE then cache = {} end
  cache[key] = value
  return cache
end
-- A list that will hold `n` entries, made at that size at once. A table filled entry by entry
-- is made again at 1, 2, 4, 8, 16... entries (about 700 instructions each time), and a call's
-- lists of its events grow to the batch's size: a batch of 16 made each of them five times.
-- (A constructor of `n` values sizes its array part once; NONE holds none, so every entry is
-- nil until set.) A list of one is made by its first entry, as cheaply.
local function list_of(n)
  if n < 2 then return {} end
  return { unpack(NONE, 1, n) }
end
-- Filled in when the library is assembled, from domain::settings::defaults() (store/script.rs).
local DEFAULT_SETTINGS = {}
-- The settings in effect in this call, read as SETTINGS.<name>: the project's, and the default
-- of each one it does not set (a table, not a function: a setting is read on almost every line
-- of a decision, and a Lua function call there was a measurable share of a creation). Only
-- read: a change goes through `Call.settings_to_change` and `Call.settings_changed`.
local SETTINGS

do
  -- Modules that keep per-call state (caches, kept by every write to what they cache), per-event
  -- state, or a cached value written back once per call, register a function here.
  local per_call_resets, per_event_resets, per_call_finishes = {}, {}, {}

  function Call.on_call(reset) per_call_resets[#per_call_resets + 1] = reset end
  function Call.on_event(reset) per_event_resets[#per_event_resets + 1] = reset end
  function Call.on_call_end(finish) per_call_finishes[#per_call_finishes + 1] = finish end

  local outputs, timers
  -- The settings as stored when the call began (false: none), and the call's own decoded copy
  -- once `settings_to_change` asked for one (nil before).
  local settings_text, settings_to_write

  -- A project's settings with the default of each one it does not set.
  local function with_defaults(settings)
    local effective = {}
    for name, value in pairs(DEFAULT_SETTINGS) do effective[name] = value end
    for name, value in pairs(settings) do effective[name] = value end
    return effective
  end

  -- The settings in effect for a stored text (false: none), made once per text (any
  -- project's: the same text is the same settings) and kept across calls (see
  -- Core.kept_by_text), so that a project with rules does not decode their JSON on every call.
  -- Only read: a change takes a table of its own (`settings_to_change`).
  local effective_settings = Core.kept_by_text(64, function(text)
    return with_defaults(text and cjson.decode(text) or {})
  end)

  -- What a stored JSON text holds (an agent's configuration, its pools), decoded once per text
  -- and kept across calls (see Core.kept_by_text): a call that reads the text again costs its
  -- read, not a decode and the tables it makes. Any project's: the same text holds the same.
  -- Up to 4,096 texts (an agent's configuration holds its own insertion number, so about one
  -- per agent in use). Only read: it may be shared with other calls and projects.
  Call.decoded = Core.kept_by_text(2048, function(text) return cjson.decode(text) end)

  -- The settings as stored (without defaults), as a table the caller may change, then store and
  -- pass to `settings_changed`: the call's own, never one that other calls read.
  function Call.settings_to_change()
    if not settings_to_write then
      settings_to_write = settings_text and cjson.decode(settings_text) or {}
    end
    return settings_to_write
  end

  -- The project's settings changed within the call (its table, as stored now).
  function Call.settings_changed(current)
    settings_to_write = current
    SETTINGS = with_defaults(current)
  end

  -- An output of the event; `sequence` is its place among the decisions about its conversation
  -- (or agent), for events about one (see `next_sequence`).
  -- (An event's first output or timer makes its list with it: a list made empty is grown
  -- for its first entry, about 800 instructions.)
  function Call.emit(event_type, data, sequence)
    local output = { type = event_type, data = data, q = sequence }
    if outputs == NONE then outputs = { output } else outputs[#outputs + 1] = output end
  end

  -- An output already written as JSON, as cjson would write `emit`'s table (keys in another
  -- order, which no reader depends on): see Core.assigned_output.
  function Call.emit_json(text)
    if outputs == NONE then outputs = { text } else outputs[#outputs + 1] = text end
  end

  -- The next number of the sequence of decisions about a conversation record (or an agent's
  -- configuration), kept in the record itself (`q`): the caller saves the record afterwards.
  function Call.next_sequence(record)
    local sequence = (tonumber(record.q) or 0) + 1
    record.q = sequence
    return sequence
  end

  -- Timers the worker arms after this call (RabbitMQ delay queues): each comes back later as a
  -- `timer.fired` event with this id and data, and is applied like any other event.
  function Call.arm_timer(delay_ms, id, data)
    local timer = { delay_ms = delay_ms, id = id, data = data }
    if timers == NONE then timers = { timer } else timers[#timers + 1] = timer end
  end

  -- What the current event produced.
  function Call.produced()
    return outputs, timers
  end

  -- Whether the current event was recorded in the version of a thing it changed (a
  -- conversation's record, or `versions`): then, if it has a time, that version recognises it
  -- again (see apply.lua), and its own record can go once its outputs are confirmed.
  local stamped
  function Call.note_stamp() stamped = true end
  function Call.stamped() return stamped end

  -- Keeps a small hash or sorted set that assignments write again and again (a pool's loads,
  -- the day's counts, the agents' configurations) in Redis's table encoding (a hash table, a
  -- skip list) rather than its compact one. Redis keeps up to 128 short entries as a listpack,
  -- which every lookup and insert reads from its start; in a sorted set it parses each score it
  -- passes from text, and a fractional load score (layout 1) takes a strtod of 17 digits. A
  -- creation in a team of 100 cost 352 thousand instructions that way against 248 in a team of
  -- 10, and placing the agent again was most of the difference. Redis turns a listpack into a
  -- table, for good, once it holds an entry longer than `hash-max-listpack-value` or
  -- `zset-max-listpack-value` (64 bytes by default): one is added and taken out again within
  -- this call, so no reader, of any release, ever sees it ('~' is outside the ids' alphabet).
  -- A table is not turned back when it shrinks, only when Redis loads its data from disk. A
  -- small one costs more memory than its reads save (a sorted set of 3 agents takes 144 bytes
  -- as a listpack and 1,088 as a table, one of 10 368 against 1,912, a hash of 10 small values
  -- 176 against 712), so it is kept from UNPACK_FROM entries on: a sorted set from a few,
  -- since it parses a score for each entry it passes, a hash from a few dozen, since it only
  -- compares their fields. The callers ask wherever such a key grows (an agent joins a pool,
  -- a day's first count of an agent, a configuration saved); once it is that large, once per
  -- call. `kind`: 'hash' or 'zset'; `from`: the size from which it is kept so, when not
  -- UNPACK_FROM[kind].
  local UNPACK_FROM = { zset = 4, hash = 32 }
  local SIZE_OF = { zset = 'ZCARD', hash = 'HLEN' }
  local unpacked, UNPACKING_ENTRY
  Call.on_call(function() unpacked = NONE end) -- (until the first: see NONE)
  function Call.keep_unpacked(key, kind, from)
    if unpacked[key] then return end
    if redis.call(SIZE_OF[kind], key) < (from or UNPACK_FROM[kind]) then return end
    unpacked = with_entry(unpacked, key, true)
    if redis.call('OBJECT', 'ENCODING', key) ~= 'listpack' then return end
    -- (Made on first use: the library's top level may not touch `string`.)
    UNPACKING_ENTRY = UNPACKING_ENTRY or string.rep('~', 1024)
    if kind == 'zset' then
      redis.call('ZADD', key, '0', UNPACKING_ENTRY)
      redis.call('ZREM', key, UNPACKING_ENTRY)
    else
      redis.call('HSET', key, UNPACKING_ENTRY, '')
      redis.call('HDEL', key, UNPACKING_ENTRY)
    end
  end

  -- Removes one agent's members from `key` (owned or offers); returns their conversation ids.
  function Call.take_agent_members(key, agent_id)
    local min, max = Core.agent_range(agent_id)
    local conversation_ids = {}
    for i, member in ipairs(redis.call('ZRANGE', key, min, max, 'BYLEX')) do
      redis.call('ZREM', key, member)
      conversation_ids[i] = Core.after_bar(member)
    end
    return conversation_ids
  end

  -- The expired head of a time-ordered list of "<id>|<time>" (`closing`, `served`): at most
  -- `limit` ids and their times, and how many (see Core.expired_head; the caller trims them).
  -- Most sweeps find nothing expired, so the head alone is read first.
  function Call.expired_head(key, cutoff, limit)
    local first = redis.call('LRANGE', key, 0, 0)
    local ids, times, count = Core.expired_head(first, cutoff)
    if count == 0 or limit == 1 then return ids, times, count end
    return Core.expired_head(redis.call('LRANGE', key, 0, limit - 1), cutoff)
  end

  -- The settings key the names in K were bound for. The KEYS layout is fixed by this
  -- library's version, so the settings key identifies all the others: a worker's consecutive
  -- events of one project reuse the table instead of building it again (a measurable share of
  -- a call).
  local keys_bound_for

  -- ARGV's random seed; the generator is seeded with it on first use in a call only, since most
  -- calls draw no random number. Each event of the batch has its own, counted from the call's.
  local call_seed, seed, seeded

  function Call.random(...)
    if not seeded then
      math.randomseed(seed)
      seeded = true
    end
    return math.random(...)
  end

  -- The event's seed (forget_old runs on a share of events picked by it).
  function Call.seed()
    return seed
  end

  -- The number a text of the shared ARGV holds. Those that change seldom (the closed
  -- retention, the next midnight, the generation's start) are parsed once per text and kept
  -- (see Core.kept_by_text): `tonumber` parses a text twice, a 16-digit one with two strtods
  -- of about 600 instructions each, and a call of one event paid that for each of them.
  -- (A function of its own: the library's top level may not name `tonumber`.)
  local seldom_changing = Core.kept_by_text(16, function(text) return text + 0 end)

  -- Binds KEYS and the shared ARGV for one call (a batch of one project's events).
  function Call.bind(keys, args)
    if keys_bound_for ~= keys[1] then
      -- "sb:{project}:", the prefix of every key of the project (keys[1] is
      -- "<prefix>settings").
      PREFIX = string.sub(keys[1], 1, -9)
      K = { settings = keys[KEY_AT.settings] }
      for name, suffix in pairs(KEY_SUFFIX) do K[name] = PREFIX .. suffix end
      keys_bound_for = keys[1]
    end
    -- The generation keys change name every generation: bound on every call.
    K.events, K.previous_events = keys[KEY_AT.events], keys[KEY_AT.previous_events]
    -- (The worker writes every one of them as a number: `+ 0` parses a text once, where
    -- `tonumber` parses it twice.)
    NOW_TEXT = args[ARGV_AT.now]
    NOW = NOW_TEXT + 0
    CLOSED_RETENTION = seldom_changing(args[ARGV_AT.closed_retention])
    ASSUMED_TIMEZONE = args[ARGV_AT.timezone]
    TODAY = args[ARGV_AT.today]
    NEXT_MIDNIGHT = seldom_changing(args[ARGV_AT.next_midnight])
    GENERATION = args[ARGV_AT.generation]
    GENERATION_START = seldom_changing(args[ARGV_AT.generation_start])
    GENERATION_TTL_TEXT = args[ARGV_AT.generation_ttl]
    LAYOUT = args[ARGV_AT.store_layout]
    -- What the call does before its first event (placing every agent again once, when the
    -- project switches layout) draws from the call's own seed, not the last call's.
    call_seed = args[ARGV_AT.seed] + 0
    seed, seeded = call_seed, false
  end

  -- Resets every per-call cache, once `bind` is done and the call has events to apply;
  -- `stored_settings` is the settings key's value (false: none).
  local none_guarded
  function Call.begin_call(stored_settings)
    NULL = cjson.null
    if not none_guarded then
      -- NONE refuses every write (each of its keys is absent, so each write asks __newindex).
      setmetatable(NONE, { __newindex = function() error('NONE is written to') end })
      none_guarded = true
    end
    settings_text, settings_to_write = stored_settings, nil
    SETTINGS = effective_settings(stored_settings)
    -- (A call's loops are numeric: `ipairs` calls its C iterator for every entry, about 400
    -- instructions each time.)
    for r = 1, #per_call_resets do per_call_resets[r]() end
  end

  -- Writes back what the call kept in its caches only.
  function Call.end_call()
    for f = 1, #per_call_finishes do per_call_finishes[f]() end
  end

  -- Binds the batch's `i`-th event (its type, its time as text and as a number, its digest)
  -- and resets every per-event value. Its random seed is the call's plus i - 1.
  function Call.begin_event(i, event_type, time_text, time, digest)
    EVENT_TYPE = event_type
    EVENT_TIME_TEXT = time_text ~= '' and time_text or nil
    EVENT_TIME = time
    EVENT_DIGEST = digest
    seed, seeded = call_seed + i - 1, false
    -- (An event's lists stay NONE until it produces something: most events arm no timer.)
    outputs, timers, stamped = NONE, NONE, false
    for r = 1, #per_event_resets do per_event_resets[r]() end
  end
end
