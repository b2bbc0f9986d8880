-- apply.lua: the entry points. `apply`: for each event of the batch, dedupe, dispatch to the
-- event's handler, hand waiting conversations to any capacity the event opened, and record the
-- outputs. `confirm`: the broker confirmed some events' outputs, which need no replay any more.
-- `probe`: nothing, refused where `apply` would be (see below). Registers these three (their
-- names carry the library's version, filled in by store/script.rs). Uses KEYS events,
-- previous_events and the legacy records after the declared keys, and every ARGV (see the
-- binding above core.lua). KEYS also holds migration_guard, which nothing reads or writes:
-- declared only so that Redis refuses the call while the project's cluster slot moves (see
-- DECLARED_KEYS in interface.rs).
--
-- Event records. An event is recorded under the digest of its id in the hash of the current
-- generation (`events`, one per `dedupe TTL` of the worker's clock, expiring after two): its
-- outputs, {"t": now_ms, "o": [outputs], "timers": [timers]}, until the worker has them
-- confirmed by the broker and says so: in the project's next `apply` (ARGV `confirmed`, the
-- digests after the events), or, when none comes soon, with `confirm`. So a redelivery of an
-- event whose outputs may not have been confirmed (its worker died in between) publishes
-- exactly those outputs again, and a duplicate of one whose outputs were confirmed publishes
-- nothing. Once confirmed, what stays depends on the event:
--   * an event with a time that changed a thing with a version (a conversation's record, an
--     agent's status or fields, a setting: see order.lua) needs no record: that version knows
--     it (its digest), and anything later makes it stale. Its record goes ("" if it had no
--     outputs: nothing is written at all);
--   * any other event (without time, or changing no versioned thing: a timer, a rejected
--     command) stays as "" (seen) for the rest of the window; its record says so ("k": 1).
-- Releases before this one kept a string key per event ("event:<sha1>"), read here for
-- redelivered events, which the worker names.
--
-- Returns a code and a text per event, in order, in one flat list (code, text, code, text...;
-- a table per event cost Redis about 5 thousand instructions to turn into its reply), with the
-- codes of REPLY: applied and replayed carry the record; wrong_timezone names the project's
-- zone (the worker assumed another: this event and the rest of the batch were not applied,
-- the list ends there); failed carries the error of a bug (the rest of the batch was not
-- applied either).

-- Replaced by store/script.rs with the versioned names.
local APPLY_FUNCTION_NAME = 'switchboard_apply'
local CONFIRM_FUNCTION_NAME = 'switchboard_confirm'
local PROBE_FUNCTION_NAME = 'switchboard_probe'

-- A list of outputs or timers as JSON: tables, or outputs already written as JSON (see
-- Call.emit_json). A list of tables alone is one cjson call.
local function encode_list(list)
  local count = #list
  if count == 0 then return '[]' end
  local written
  for i = 1, count do
    if type(list[i]) == 'string' then written = {} break end
  end
  if not written then return cjson.encode(list) end
  for i = 1, count do
    local item = list[i]
    written[i] = type(item) == 'string' and item or cjson.encode(item)
  end
  return '[' .. table.concat(written, ',') .. ']'
end

-- An applied event's record (see above), once it produced something. Most events produce
-- one output, already written as JSON: the record is then one concatenation (a text of this
-- size made and copied once more costs about 2 thousand instructions).
local function event_record(outputs, timers, keep_mark)
  local only = #outputs == 1 and type(outputs[1]) == 'string' and outputs[1]
  local ending = keep_mark and STAYS_SEEN_MARK or '}'
  if only then
    return '{"t":' .. NOW_TEXT .. ',"o":[' .. only .. '],"timers":' .. encode_list(timers)
      .. ending
  end
  return '{"t":' .. NOW_TEXT .. ',"o":' .. encode_list(outputs) .. ',"timers":'
    .. encode_list(timers) .. ending
end

-- For each event digest of the call: the record found (found_records; "" = seen, its outputs
-- confirmed) and whether it was in the current generation; the digests handled in this call
-- (a second copy in the batch is a duplicate); the records to write when the call ends, as
-- HSET's arguments (digest, record, digest, record...: an event is recorded at most once) and
-- how many; the digest of each event of the batch, in order, and the `time` of each one not
-- found in the current generation (every event that may be applied), as a number: a time is 16
-- digits, which `tonumber` parses the slow way (a measurable share of a creation), so once.
local found_records, found_in_current, handled, new_records, new_record_count, digests, times

-- The batch's `i`-th event's type is ARGV[i * EVENT_ARG_COUNT + TYPE_ARG], and so on: each is
-- read once or twice per event, where a function call for each was a measurable share of a
-- creation.
local TYPE_ARG, DATA_ARG, TIME_ARG, DIGEST_ARG, LEGACY_ARG
do
  local before_first = SHARED_ARG_COUNT - EVENT_ARG_COUNT + 1
  TYPE_ARG, DATA_ARG, TIME_ARG = before_first + EVENT_ARG_AT.type,
    before_first + EVENT_ARG_AT.data, before_first + EVENT_ARG_AT.time
  DIGEST_ARG, LEGACY_ARG = before_first + EVENT_ARG_AT.digest, before_first + EVENT_ARG_AT.legacy
end

-- A worker's clock and a platform's may disagree by this much (us): an event whose `time` is
-- this close to the current generation's start may have been applied in the previous one.
local CLOCK_SKEW_US = 600000000

-- Looks the batch's events up: in the current generation, then in the previous one for the
-- events that may have been applied before the current one began (their `time` is older than
-- its start, give or take the clocks' skew, or they have none), then in the records an earlier
-- release kept for the redelivered ones. Returns how many were found.
local function find_records(keys, args, events)
  digests = list_of(events)
  for i = 1, events do digests[i] = args[i * EVENT_ARG_COUNT + DIGEST_ARG] end
  found_records, found_in_current, handled = {}, {}, {}
  new_records, new_record_count, times = list_of(2 * events), 0, list_of(events)
  local current = redis.call('HMGET', K.events, unpack(digests))
  local older = {}
  for i = 1, events do
    if current[i] then
      found_records[digests[i]] = current[i]
      found_in_current[digests[i]] = true
    else
      -- ('' when it has none; else written by the worker as a number, which `+ 0` parses
      -- once where `tonumber` parses it twice.)
      local time_text = args[i * EVENT_ARG_COUNT + TIME_ARG]
      local time = time_text ~= '' and time_text + 0 or nil
      times[i] = time
      if not time or time < GENERATION_START + CLOCK_SKEW_US then older[#older + 1] = digests[i] end
    end
  end
  if #older > 0 then
    local previous = redis.call('HMGET', K.previous_events, unpack(older))
    for i = 1, #older do
      if previous[i] then found_records[older[i]] = previous[i] end
    end
  end
  local found = 0
  for i = 1, events do
    local legacy = args[i * EVENT_ARG_COUNT + LEGACY_ARG]
    if legacy ~= '0' and not found_records[digests[i]] then
      local record = redis.call('GET', keys[tonumber(legacy)])
      -- An earlier release's event changed no version this release reads: once confirmed,
      -- it stays as seen.
      if record then found_records[digests[i]] = string.sub(record, 1, -2) .. STAYS_SEEN_MARK end
    end
    if found_records[digests[i]] then found = found + 1 end
  end
  return found
end

-- Records the event (its digest) when the call ends.
local function record_event(digest, record)
  new_records[new_record_count + 1], new_records[new_record_count + 2] = digest, record
  new_record_count = new_record_count + 2
end

-- The reply (code, text) for an event recorded before, or handled earlier in this batch. A
-- record whose outputs are not confirmed yet, found outside the current generation, is written
-- there again, where the worker's `confirm` (which names the current generation) reaches it.
local function replay(digest)
  if handled[digest] then return REPLY.duplicate, '' end
  handled[digest] = true
  local record = found_records[digest]
  if record == '' then return REPLY.duplicate, '' end
  if not found_in_current[digest] then record_event(digest, record) end
  return REPLY.replayed, record
end

-- Applies the batch's `i`-th event (its data decoded), as if it were a call of its own;
-- returns its reply (code, text).
local function apply_event(args, i, data)
  local digest = digests[i]
  if handled[digest] or found_records[digest] then return replay(digest) end
  local at = i * EVENT_ARG_COUNT
  Call.begin_event(i, args[at + TYPE_ARG], args[at + TIME_ARG], times[i], digest)

  -- The worker computes the local date (Lua has no time-zone data): if it assumed another
  -- zone than the project's, it is told the right one and calls again. Nothing has changed.
  if ASSUMED_TIMEZONE ~= SETTINGS.timezone then
    return REPLY.wrong_timezone, SETTINGS.timezone
  end

  -- A new local day: daily counts start again, agents held back by them rejoin the pools, and
  -- conversations already waiting take the capacity before this event's own.
  if Meta.get('day') ~= TODAY then
    Agents.new_day()
    Meta.set('day', TODAY)
    Pools.refresh_all()
    Conversations.drain()
  end

  local handler = Handlers[EVENT_TYPE]
  -- The worker sends only the contract's types; anything else is a bug, failed loudly.
  if not handler then error('unknown event type ' .. EVENT_TYPE) end
  handled[digest] = true
  local outcome = handler(data)
  if outcome then
    -- Stale or a duplicate: the handler changed nothing. With a time, the versions that
    -- judged it will judge it so again; without, it is remembered as seen.
    if not EVENT_TIME then record_event(digest, '') end
    return REPLY[outcome], ''
  end
  Conversations.drain()
  Conversations.forget_old()

  local outputs, timers = Call.produced()
  local keep_mark = not (EVENT_TIME and Call.stamped())
  local record = ''
  if #outputs > 0 or #timers > 0 then
    record = event_record(outputs, timers, keep_mark)
    record_event(digest, record)
  elseif keep_mark then
    record_event(digest, '')
  end
  return REPLY.applied, record
end

-- Writes the call's new event records in one HSET. The first write to a generation's hash sets
-- its expiry: `meta` notes the generation (when the call read it), else EXPIRE ... NX asks.
local function write_records(meta_read)
  if new_record_count == 0 then return end
  redis.call('HSET', K.events, unpack(new_records, 1, new_record_count))
  if not meta_read then
    redis.call('EXPIRE', K.events, GENERATION_TTL_TEXT, 'NX')
  elseif Meta.get('events_generation') ~= GENERATION then
    redis.call('EXPIRE', K.events, GENERATION_TTL_TEXT)
    Meta.note_generation(GENERATION)
  end
end

-- The error of a failed event, as text (redis.call raises a table with `err`).
local function error_text(failure)
  if type(failure) == 'table' then return tostring(failure.err) end
  return tostring(failure)
end

-- The broker confirmed the outputs of these events (`digests`), recorded in the generation
-- `key`: their outputs are dropped. The worker, which had each record in its reply, marks (see
-- STAYS_SEEN_CONFIRMATION) the digests whose record says they stay as seen: those become "", where
-- their record still is (one no longer there, its generation expired, stays forgotten). The
-- others' records go without being read first (a field already gone is left alone). Returns
-- how many records changed.
local function drop_outputs(key, digests)
  local seen, gone = {}, list_of(#digests)
  for i = 1, #digests do
    local digest = digests[i]
    if string.byte(digest, 1) == STAYS_SEEN_CONFIRMATION_BYTE then
      seen[#seen + 1] = string.sub(digest, 2)
    else
      gone[#gone + 1] = digest
    end
  end
  local changed = 0
  if #seen > 0 then
    local records = redis.call('HMGET', key, unpack(seen))
    local fields = {}
    for i = 1, #seen do
      if records[i] and records[i] ~= '' then
        fields[#fields + 1] = seen[i]
        fields[#fields + 1] = ''
      end
    end
    if #fields > 0 then
      redis.call('HSET', key, unpack(fields))
      changed = #fields / 2
    end
  end
  if #gone > 0 then changed = changed + redis.call('HDEL', key, unpack(gone)) end
  return changed
end

-- `confirm`: the confirmed events' digests (marked as above) are ARGV, their generation KEYS[1].
local function confirm(keys, args)
  if not tonumber then bind_standard_library() end
  return drop_outputs(keys[1], args)
end

local function apply(keys, args)
  if not tonumber then bind_standard_library() end
  local confirmed = tonumber(args[ARGV_AT.confirmed]) or 0
  local events = (#args - SHARED_ARG_COUNT - confirmed) / EVENT_ARG_COUNT
  if #keys < DECLARED_KEY_COUNT or events < 1 or events % 1 ~= 0 then
    error('apply expects ' .. DECLARED_KEY_COUNT .. ' project keys and legacy record keys, '
      .. SHARED_ARG_COUNT .. ' shared arguments, ' .. EVENT_ARG_COUNT .. ' per event and the '
      .. 'confirmed digests')
  end
  Call.bind(keys, args)
  -- Confirmations first: a copy of a confirmed event in this very batch is then a duplicate,
  -- which publishes nothing, rather than a replay of what the broker already has.
  if confirmed > 0 then
    local first = SHARED_ARG_COUNT + events * EVENT_ARG_COUNT + 1
    drop_outputs(K.events, { unpack(args, first, first + confirmed - 1) })
  end
  local replies = list_of(2 * events)
  -- A batch of repeats costs a lookup, nothing more.
  if find_records(keys, args, events) == events then
    for i = 1, events do replies[2 * i - 1], replies[2 * i] = replay(digests[i]) end
    write_records(false)
    return replies
  end
  Call.begin_call(redis.call('GET', K.settings))
  -- Loads kept per agent are scored in whole numbers: every agent is placed again, at once.
  if Load.move_to_agent_keys() then Pools.refresh_all() end
  Visitors.move_to_buckets()
  -- The conversations the batch's events name are read with one HMGET, not one HGET each.
  local data, named = list_of(events), list_of(events)
  for i = 1, events do
    if not found_records[digests[i]] then
      data[i] = cjson.decode(args[i * EVENT_ARG_COUNT + DATA_ARG])
      if type(data[i].conversation_id) == 'string' then
        named[#named + 1] = data[i].conversation_id
      end
    end
  end
  Records.prefetch(named)
  for i = 1, events do
    local ok, code, text = pcall(apply_event, args, i, data[i])
    if not ok then code, text = REPLY.failed, error_text(code) end
    replies[2 * i - 1], replies[2 * i] = code, text
    if code == REPLY.wrong_timezone or code == REPLY.failed then break end
  end
  Call.end_call()
  write_records(true)
  return replies
end


-- `probe`: does nothing, and is refused whenever `apply` would be. Like `apply` it is a function
-- that may write (it declares no `no-writes`), so Redis refuses to start it on a master at its
-- memory limit (OOM), short of replicas (NOREPLICAS) or unable to save (MISCONF), and on a
-- replica (READONLY), where most of these still answer PING. The worker calls it while no event
-- flows, so that `/readyz` says whether an event could be applied now, not whether Redis
-- answers.
local function probe()
  if not tonumber then bind_standard_library() end
  return 1
end

redis.register_function(APPLY_FUNCTION_NAME, apply)
redis.register_function(CONFIRM_FUNCTION_NAME, confirm)
redis.register_function(PROBE_FUNCTION_NAME, probe)
