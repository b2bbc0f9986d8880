-- order.lua: the order of events about one thing. Module `Versions`; uses KEYS versions and no
-- ARGV of its own.
--
-- A platform states the order of its events with `time`. Each thing an event changes keeps the
-- version of the last event applied to it, "<time us>:<digest of its id>": an agent's status,
-- each field of an agent's configuration, each setting, an agent's get-next claims (in the
-- `versions` hash), and a conversation's lifecycle and assignment (in its record, see
-- conversations.lua). An event older than the version of what it would change is stale: it
-- changes nothing and publishes nothing. The same event again (its digest is the version's) is
-- a duplicate, whenever it comes back. An event without `time`, or with the same time as the
-- version, is applied in the order workers apply it. (The comparison itself is Core.judge.)

do
  -- Versions read or written in this call (field -> text, false: none; NONE until the first:
  -- a conversation's versions are in its record).
  local cache
  Call.on_call(function() cache = NONE end)

  -- How the current event stands against a version (its time and digest, nil when none).
  function Versions.judge(stored_time, stored_digest)
    return Core.judge(stored_time, stored_digest, EVENT_TIME, EVENT_DIGEST)
  end

  -- Reads these things' versions (the ones not read yet in this call) with one HMGET.
  function Versions.read(things)
    local missing = {}
    for _, thing in ipairs(things) do
      if cache[thing] == nil then missing[#missing + 1] = thing end
    end
    if #missing == 0 then return end
    local found = redis.call('HMGET', K.versions, unpack(missing))
    for i, thing in ipairs(missing) do cache = with_entry(cache, thing, found[i] or false) end
  end

  -- The version of one thing: time and digest, or nil.
  function Versions.of(thing)
    if cache[thing] == nil then Versions.read({ thing }) end
    return Core.parse_version(cache[thing] or nil)
  end

  -- Whether an event later than the current one set this thing (events crossed on their way).
  -- An event without `time` is applied in arrival order: nothing is later than it.
  function Versions.set_later(thing)
    local time = Versions.of(thing)
    return EVENT_TIME ~= nil and time ~= nil and time > EVENT_TIME
  end

  -- How the current event stands against one thing: 'apply', 'stale' or 'duplicate'.
  function Versions.judge_thing(thing)
    return Versions.judge(Versions.of(thing))
  end

  -- Records that the current event was applied to these things (a list), in one HSET.
  function Versions.advance(things)
    if #things == 0 then return end
    local args = {}
    for _, thing in ipairs(things) do
      local text = Core.advanced_version((Versions.of(thing)), EVENT_TIME, EVENT_TIME_TEXT,
        EVENT_DIGEST)
      cache = with_entry(cache, thing, text)
      args[#args + 1] = thing
      args[#args + 1] = text
    end
    redis.call('HSET', K.versions, unpack(args))
    Call.note_stamp()
  end

  -- Forgets these things' versions (an agent removed: its removal's version speaks for them).
  function Versions.forget(things)
    if #things == 0 then return end
    for _, thing in ipairs(things) do cache = with_entry(cache, thing, false) end
    redis.call('HDEL', K.versions, unpack(things))
  end
end
