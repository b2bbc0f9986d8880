-- apply.lua: the entry point. For each event of the batch: dedupe, dispatch to the event's
-- handler, hand waiting conversations to any capacity the event opened, and record the outputs.
-- Last part of the library; registers `apply` (its name carries the library's version, filled
-- in by store/script.rs) with the KEYS and ARGV listed in prelude.lua.
--
-- Returns one reply per event, in order: {replayed, record}, where record is
-- {"t": now_ms, "o": [outputs], "timers": [timers]}. An event seen before returns the record
-- stored the first time (replayed = 1), so a redelivery publishes exactly the same outputs again
-- and changes nothing else. {2, time zone}: the worker assumed the wrong zone for the project's
-- day, and should call again with this one for this event and the rest of the batch, which
-- were not applied (the list ends there).

-- The project's keys come first in KEYS, then one record key per event; ARGV has 7 values
-- shared by the batch, then a type and a data per event.
local PROJECT_KEYS, SHARED_ARGS = 21, 7

local function encode_list(list)
  if #list == 0 then return '[]' end
  return cjson.encode(list)
end

-- Records read at the start of the call (one MGET for the batch), by event key, and the ones
-- written since: the same event twice in a batch is a replay the second time.
local records

-- Applies the batch's `i`-th event (its data decoded), as if it were a call of its own.
local function apply_event(keys, args, i, data)
  local event_key = keys[PROJECT_KEYS + i]
  local recorded = records[event_key]
  if recorded then return { 1, recorded } end
  begin_event(event_key, args[SHARED_ARGS + 2 * i - 1], tonumber(args[2]) + i - 1)

  -- The worker computes the local date (Lua has no time-zone data): if it assumed another
  -- zone than the project's, it is told the right one and calls again. Nothing has changed.
  if ASSUMED_TIMEZONE ~= setting('timezone') then return { 2, setting('timezone') } end

  -- A new local day: daily counts start again, agents held back by them rejoin the pools, and
  -- conversations already waiting take the capacity before this event's own.
  if meta_cache.day ~= TODAY then
    redis.call('DEL', K.daily)
    redis.call('HSET', K.meta, 'day', TODAY)
    meta_cache.day = TODAY
    refresh_all()
    drain()
  end

  local handler = handlers[EVENT_TYPE]
  -- The worker sends only the contract's types; anything else is a bug, failed loudly.
  if not handler then error('unknown event type ' .. EVENT_TYPE) end
  handler(data)
  drain()
  forget_old()

  local record = '{"t":' .. NOW_TEXT .. ',"o":' .. encode_list(outputs)
    .. ',"timers":' .. encode_list(timers) .. '}'
  redis.call('SET', K.event, record, 'EX', DEDUPE_TTL_TEXT)
  records[K.event] = record
  return { 0, record }
end

local function apply(keys, args)
  local events = #keys - PROJECT_KEYS
  if events < 1 or #args ~= SHARED_ARGS + 2 * events then
    error('apply expects ' .. PROJECT_KEYS .. ' project keys, one record key per event, '
      .. SHARED_ARGS .. ' shared arguments and two per event')
  end
  -- Every record is read before anything else, with the settings: a replayed batch costs one
  -- MGET, and so does everything else a call reads from those keys.
  local found = redis.call('MGET', keys[1], unpack(keys, PROJECT_KEYS + 1))
  records = {}
  local replays = 0
  for i = 1, events do
    if found[i + 1] then
      records[keys[PROJECT_KEYS + i]] = found[i + 1]
      replays = replays + 1
    end
  end
  if replays == events then
    local replies = {}
    for i = 1, events do replies[i] = { 1, found[i + 1] } end
    return replies
  end
  begin_call(keys, args, found[1])
  -- The conversations the batch's events name are read with one HMGET, not one HGET each.
  local data, named = {}, {}
  for i = 1, events do
    if not records[keys[PROJECT_KEYS + i]] then
      data[i] = cjson.decode(args[SHARED_ARGS + 2 * i])
      if type(data[i].conversation_id) == 'string' then
        named[#named + 1] = data[i].conversation_id
      end
    end
  end
  prefetch_conversations(named)
  local replies = {}
  for i = 1, events do
    replies[i] = apply_event(keys, args, i, data[i])
    if replies[i][1] == 2 then break end
  end
  end_call()
  return replies
end

-- Replaced by store/script.rs with the versioned name.
local APPLY_FUNCTION_NAME = 'switchboard_apply'
redis.register_function(APPLY_FUNCTION_NAME, apply)
