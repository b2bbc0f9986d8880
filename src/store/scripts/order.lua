-- order.lua: the order of events about one thing. Part of the function library; uses KEYS
-- versions and no ARGV of its own.
--
-- A platform states the order of its events with `time`. Each thing an event changes keeps the
-- version of the last event applied to it, "<time us>:<digest of its id>": an agent's status,
-- each field of an agent's configuration, each setting, an agent's get-next claims (in the
-- `versions` hash), and a conversation's lifecycle and assignment (in its record, see
-- conversations.lua). An event older than the version of what it would change is stale: it
-- changes nothing and publishes nothing. The same event again (its digest is the version's) is
-- a duplicate, whenever it comes back. An event without `time`, or with the same time as the
-- version, is applied in the order workers apply it.

-- What to do with the current event, given a thing's version (its time, a number, and digest;
-- nil when the thing has none): 'apply', 'stale' or 'duplicate'.
local function judge(stored_time, stored_digest)
  if stored_digest == EVENT_DIGEST then return 'duplicate' end
  if EVENT_TIME and stored_time and EVENT_TIME < stored_time then return 'stale' end
  return 'apply'
end

-- A version as stored: time (nil for an event without time) and digest.
local function parse_version(text)
  if not text then return nil, nil end
  local colon = string.find(text, ':', 1, true)
  return tonumber(string.sub(text, 1, colon - 1)), string.sub(text, colon + 1)
end

-- The version a thing has once the current event is applied to it: the later time stays (an
-- event without time does not move it), and the digest is the event's.
local function advanced_version(stored_time)
  local time_text = EVENT_TIME_TEXT
  if not EVENT_TIME or (stored_time and stored_time > EVENT_TIME) then
    time_text = stored_time and string.format('%d', stored_time) or ''
  end
  return time_text .. ':' .. EVENT_DIGEST
end

-- Versions read or written in this call (field -> text, false: none).
local version_cache
per_call_resets[#per_call_resets + 1] = function() version_cache = {} end

-- Reads these fields of `versions` (the ones not read yet in this call) with one HMGET.
local function read_versions(fields)
  local missing = {}
  for _, field in ipairs(fields) do
    if version_cache[field] == nil then missing[#missing + 1] = field end
  end
  if #missing == 0 then return end
  local found = redis.call('HMGET', K.versions, unpack(missing))
  for i, field in ipairs(missing) do version_cache[field] = found[i] or false end
end

-- The version of one thing in `versions`: time and digest, or nil.
local function version_of(field)
  if version_cache[field] == nil then read_versions({ field }) end
  return parse_version(version_cache[field] or nil)
end

-- How the current event stands against one thing of `versions`.
local function judge_thing(field)
  return judge(version_of(field))
end

-- Records that the current event was applied to these things (a list of fields), in one HSET.
local function advance_things(fields)
  if #fields == 0 then return end
  local args = {}
  for _, field in ipairs(fields) do
    local text = advanced_version((version_of(field)))
    version_cache[field] = text
    args[#args + 1] = field
    args[#args + 1] = text
  end
  redis.call('HSET', K.versions, unpack(args))
end

-- Forgets these things' versions (an agent removed: its removal's version speaks for them).
local function forget_things(fields)
  if #fields == 0 then return end
  for _, field in ipairs(fields) do version_cache[field] = false end
  redis.call('HDEL', K.versions, unpack(fields))
end

-- Combines the outcomes of the parts of one event (the fields of a patch, the agents of an
-- upsert): applied if any part was, else stale if any part was, else a duplicate.
local function combined_outcome(outcomes)
  if outcomes.apply then return nil end
  if outcomes.stale then return 'stale' end
  if outcomes.duplicate then return 'duplicate' end
  return nil
end
