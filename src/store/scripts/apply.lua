-- apply.lua: the entry point. Dedupe, dispatch to the event's handler, hand waiting
-- conversations to any capacity the event opened, and record the outputs.
-- Last part of the library; registers `apply` (its name carries the library's version, filled
-- in by store/script.rs) with the KEYS and ARGV listed in prelude.lua.
--
-- Returns {replayed, record}: record is {"t": now_ms, "o": [outputs], "timers": [timers]}. An
-- event seen before returns the record stored the first time (replayed = 1), so a redelivery
-- publishes exactly the same outputs again and changes nothing else. {2, time zone}: the
-- worker assumed the wrong zone for the project's day, and should call again with this one.

local function encode_list(list)
  if #list == 0 then return '[]' end
  return cjson.encode(list)
end

local function apply(keys, args)
  -- The record is read before anything else: a replay costs one GET.
  local recorded = redis.call('GET', keys[1])
  if recorded then return { 1, recorded } end
  begin_call(keys, args)

  -- The worker computes the local date (Lua has no time-zone data): if it assumed another
  -- zone than the project's, it is told the right one and calls again. Nothing has changed.
  if ASSUMED_TIMEZONE ~= setting('timezone') then return { 2, setting('timezone') } end

  -- A new local day: daily counts start again, agents held back by them rejoin the pools, and
  -- conversations already waiting take the capacity before this event's own.
  if meta_cache.day ~= TODAY then
    redis.call('DEL', K.daily)
    redis.call('HSET', K.meta, 'day', TODAY)
    refresh_all()
    drain()
  end

  local handler = handlers[EVENT_TYPE]
  if not handler then return redis.error_reply('unknown event type ' .. EVENT_TYPE) end
  handler(cjson.decode(args[2]))
  drain()
  forget_old()

  local record = '{"t":' .. string.format('%d', NOW) .. ',"o":' .. encode_list(outputs)
    .. ',"timers":' .. encode_list(timers) .. '}'
  redis.call('SET', K.event, record, 'EX', DEDUPE_TTL)
  return { 0, record }
end

-- Replaced by store/script.rs with the versioned name.
local APPLY_FUNCTION_NAME = 'switchboard_apply'
redis.register_function(APPLY_FUNCTION_NAME, apply)
