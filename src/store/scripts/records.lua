-- records.lua: conversation records, as stored and as the current event orders them. Module
-- `Records`; uses KEYS convs and no ARGV of its own.
--
-- A conversation record is JSON:
--   s   state: waiting | open | offered (broadcast) | pending (custom) | closed
--   a   agent (while open; kept after closing, for a reopen)
--   v   visitor (absent in a tombstone: closed before it was created; a late creation is
--       ignored)
--   p   priority, n arrival number, w member in the waiting queues, pw the pool whose queue it
--       waits in
--   an  assignment number (bumped by every assignment), rp the assignment the agent replied to,
--       x agents that let it time out, tn rule-step timer number, rq custom request number,
--       o agents it is offered to
--   ri, si  rule and step; ch, ca, lang, cat, attrs the routing fields
--   t   lifecycle version: the latest `time` (us, as text) of a creation, message or close
--       applied to it; ta assignment version: the latest `time` of an event that changed who
--       holds it (creation, close, reopen, claim, transfer, decision); e the digest of the last
--       event applied to it (see order.lua)
--   q   the sequence of decisions published about it (see `Call.next_sequence`)
--   z   once reopened: its last closing time, ms (0 while open again; see conversations.lua)
--
-- Stored compactly, as every byte of a record stays for the closed retention: a priority of 0
-- is left out (read as 0, as every release does), and so is `ta` when it equals `t` (most
-- conversations are assigned by their creation). A record with `t` and no assignment version
-- stores `ta` as "". Records written with both versions in full read the same. `get` and
-- `save` turn one form into the other, so the rest of the library sees every field.
--
-- A field is cleared only where it is set (`if record.w then record.w = nil end`), and a new
-- record holds the fields given, with a slot named for each one it gets before its first
-- decision (see `new`): Lua keeps a slot for a key set to nil, so a new conversation's table
-- filled with such slots and was grown again and again on its way to its first assignment
-- (about 800 instructions each time).
--
-- Written as JSON, or as MessagePack in store layout 2 (LAYOUT): a third smaller,
-- with the versions as integers rather than 16 digits of text, but unreadable by a release
-- before this one. Both are read (a JSON record starts with '{', which no MessagePack map
-- does), so workers writing either share a Redis.

do
  -- Records read or written in this call, as stored (id -> JSON, false: none). A batch's own
  -- conversations are read together up front (`Records.prefetch`); every write goes through
  -- here too, so a read sees exactly what Redis holds. Kept as text: each read decodes a fresh
  -- table, which its caller may change.
  local cache
  Call.on_call(function() cache = {} end)

  -- The conversation's record (a fresh table), or nil.
  function Records.get(conversation_id)
    local raw = cache[conversation_id]
    if raw == nil then
      raw = redis.call('HGET', K.convs, conversation_id) or false
      cache[conversation_id] = raw
    end
    if not raw then return nil end
    local record
    if string.byte(raw, 1) == 123 then -- '{'
      record = cjson.decode(raw)
    else
      record = cmsgpack.unpack(raw)
      record.t, record.ta = Core.version_text(record.t), Core.version_text(record.ta)
    end
    if record.ta == nil then
      record.ta = record.t
    elseif record.ta == '' then
      record.ta = nil
    end
    return record
  end

  -- Reads these conversations' records with one HMGET (those not read yet in this call).
  function Records.prefetch(ids)
    local missing = list_of(#ids)
    for i = 1, #ids do
      local id = ids[i]
      if cache[id] == nil then missing[#missing + 1] = id end
    end
    if #missing == 0 then return end
    local found = redis.call('HMGET', K.convs, unpack(missing))
    for i = 1, #missing do cache[missing[i]] = found[i] or false end
  end

  -- A version as stored in layout 2, a number: most often the current event's time, already
  -- parsed (a time is 16 digits, which `tonumber` parses the slow way).
  local function stored_version(time)
    if time ~= nil and time == EVENT_TIME_TEXT then return EVENT_TIME end
    return Core.version_number(time)
  end

  function Records.save(conversation_id, record)
    local assignment, priority = record.ta, record.p
    if assignment == record.t then
      record.ta = nil
    elseif assignment == nil then -- (and `t` is set)
      record.ta = ''
    end
    if priority == 0 then record.p = nil end
    local lifecycle = record.t
    local raw
    if LAYOUT == '2' then
      record.t, record.ta = stored_version(record.t), stored_version(record.ta)
      raw = cmsgpack.pack(record)
    else
      raw = cjson.encode(record)
    end
    record.t, record.ta, record.p = lifecycle, assignment, priority
    redis.call('HSET', K.convs, conversation_id, raw)
    cache[conversation_id] = raw
  end

  -- Forgets a closed conversation's record.
  function Records.forget(conversation_id)
    redis.call('HDEL', K.convs, conversation_id)
    cache[conversation_id] = false
  end

  -- How the current event stands against the conversation (nil: none yet): against its
  -- lifecycle (creation, message, close) or its assignment (reply, claim, transfer, decision).
  function Records.judge(record, aspect)
    if not record then return 'apply' end
    local version = record.t
    if aspect == 'assignment' then version = record.ta end
    return Versions.judge(tonumber(version), record.e)
  end

  -- Notes in the record (which the caller saves) that the current event changed its lifecycle,
  -- its assignment, or both: their versions move to the event's time, never back.
  function Records.stamp(record, lifecycle, assignment)
    if EVENT_TIME then
      if lifecycle and not ((tonumber(record.t) or -1) > EVENT_TIME) then
        record.t = EVENT_TIME_TEXT
      end
      if assignment and not ((tonumber(record.ta) or -1) > EVENT_TIME) then
        record.ta = EVENT_TIME_TEXT
      end
    end
    record.e = EVENT_DIGEST
    Call.note_stamp()
  end

  -- The record of a conversation seen for the first time, numbered in arrival order and
  -- matched against the rules.
  function Records.new(data)
    -- The fields every record gets on its way to its first decision are named here, most as
    -- nil: a field named in a constructor has its slot from the start, kept for when it is
    -- set, so the table is made at its size once instead of grown three times.
    local record = {
      p = data.priority or 0, n = Meta.next_arrival(), v = data.visitor_id,
      s = nil, a = nil, an = nil, q = nil, t = nil, ta = nil, e = nil,
    }
    if data.channel then record.ch = data.channel end
    if data.channel_account then record.ca = data.channel_account end
    if data.language then record.lang = data.language end
    if data.category then record.cat = data.category end
    if data.attributes then record.attrs = data.attributes end
    local rule = Routing.matching_rule(record)
    if rule then record.ri, record.si = rule, 1 end
    return record
  end
end
