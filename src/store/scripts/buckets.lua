-- buckets.lua: a big hash kept as many small ones. Module `Buckets`; uses KEYS meta (through
-- Meta: the field that describes each spread hash) and the buckets' keys "<key>:<n>", which
-- share the project's hash tag; no ARGV of its own.
--
-- A hash of a hundred thousand fields is a table in Redis, which costs about 50 B of its own
-- per field (an entry, two strings, a slot), more than a visitor's whole memory. A hash of a
-- few dozen short fields is one listpack, a few bytes per field. So a spread hash puts its
-- fields in buckets, "<key>:0", "<key>:1", ..., by linear hashing (Core.bucket_of) on a
-- hash of the field (Core.field_hash): one bucket at first, and one more each time the
-- fields outnumber BUCKET_LOAD a bucket, made by moving about half the fields of one bucket
-- (Core.split_source): a bounded step, never a rehash of the whole. Buckets are never merged:
-- a hash that shrinks keeps its buckets, each emptier.
--
-- `meta` holds "<buckets>|<fields>|<next swept>|<round start, ms>" under the spread's field
-- (one of Meta's FIELDS, so it comes with the call's read of meta), written once at the end of
-- a call that changed it: the bucket `sweep` goes through next, and when its round began.

do
  -- Fields per bucket, on average, before one more bucket is made. The buckets not split yet
  -- hold up to twice the average (they cover twice the hashes), 32: far under Redis's default
  -- `hash-max-listpack-entries` (128), so a bucket stays a listpack, and a lookup, which reads
  -- a listpack from its start, reads a few dozen entries at most.
  local BUCKET_LOAD = 16

  -- The spread hashes used in this call, by meta field: {key, buckets, level, fields, swept,
  -- round_start, changed, names (of the buckets, by number)}.
  local spreads
  Call.on_call(function() spreads = NONE end) -- (until the first: see NONE)
  Call.on_call_end(function()
    for field, spread in pairs(spreads) do
      if spread.changed then
        Meta.set(field, string.format('%d|%d|%d|%d', spread.buckets, spread.fields,
          spread.swept, spread.round_start))
      end
    end
  end)

  -- Starts spreading the hash `meta_field` describes: one empty bucket.
  function Buckets.start(meta_field)
    Meta.set(meta_field, '1|0|0|' .. NOW_TEXT)
  end

  local function spread_of(key, meta_field)
    local spread = spreads[meta_field]
    if not spread then
      local buckets, fields, swept, round_start =
        string.match(Meta.get(meta_field), '^(%d+)|(%d+)|(%d+)|(%d+)$')
      buckets = tonumber(buckets)
      spread = {
        key = key, buckets = buckets, level = Core.bucket_level(buckets),
        fields = tonumber(fields), swept = tonumber(swept), round_start = tonumber(round_start),
        changed = false, names = {},
      }
      spreads = with_entry(spreads, meta_field, spread)
    end
    return spread
  end

  local hash = Core.field_hash

  -- The name of bucket `n`, built once per call (a new string is garbage to collect).
  local function bucket_name(spread, n)
    local name = spread.names[n]
    if not name then
      name = spread.key .. ':' .. n
      spread.names[n] = name
    end
    return name
  end

  -- The bucket of `field`. The last field asked for is remembered with its bucket: a creation
  -- looks its visitor up, then remembers them, and the field's hash is worth computing once.
  -- A split, which moves fields between buckets, forgets it.
  local function bucket_key(spread, field)
    if spread.last_field ~= field then
      spread.last_field = field
      spread.last_bucket = bucket_name(spread,
        Core.bucket_of(hash(field), spread.buckets, spread.level))
    end
    return spread.last_bucket
  end

  -- Makes one more bucket, with the fields of its source bucket that now belong to it.
  local function split(spread)
    local new = spread.buckets
    local source = bucket_name(spread, Core.split_source(new))
    spread.buckets = new + 1
    spread.level = Core.bucket_level(spread.buckets)
    spread.last_field = nil
    local entries = redis.call('HGETALL', source)
    local moved, names = {}, {}
    for i = 1, #entries, 2 do
      if Core.bucket_of(hash(entries[i]), spread.buckets, spread.level) == new then
        moved[#moved + 1] = entries[i]
        moved[#moved + 1] = entries[i + 1]
        names[#names + 1] = entries[i]
      end
    end
    if #names > 0 then
      redis.call('HSET', bucket_name(spread, new), unpack(moved))
      redis.call('HDEL', source, unpack(names))
    end
  end

  -- The value of `field` in the spread hash `key`, or nil.
  function Buckets.get(key, meta_field, field)
    return redis.call('HGET', bucket_key(spread_of(key, meta_field), field), field) or nil
  end

  -- The values of `fields`, by position (false: none): one HMGET per bucket.
  function Buckets.get_many(key, meta_field, fields)
    local spread = spread_of(key, meta_field)
    local by_bucket = {}
    for i, field in ipairs(fields) do
      local bucket = bucket_key(spread, field)
      local at = by_bucket[bucket] or { names = {}, positions = {} }
      by_bucket[bucket] = at
      at.names[#at.names + 1] = field
      at.positions[#at.positions + 1] = i
    end
    local values = {}
    for bucket, at in pairs(by_bucket) do
      local found = redis.call('HMGET', bucket, unpack(at.names))
      for j, position in ipairs(at.positions) do values[position] = found[j] end
    end
    return values
  end

  function Buckets.set(key, meta_field, field, value)
    local spread = spread_of(key, meta_field)
    if redis.call('HSET', bucket_key(spread, field), field, value) == 1 then
      spread.fields = spread.fields + 1
      spread.changed = true
      if spread.fields > BUCKET_LOAD * spread.buckets then split(spread) end
    end
  end

  function Buckets.delete(key, meta_field, fields)
    local spread = spread_of(key, meta_field)
    for _, field in ipairs(fields) do
      if redis.call('HDEL', bucket_key(spread, field), field) == 1 then
        spread.fields = spread.fields - 1
        spread.changed = true
      end
    end
  end

  -- Goes through the next bucket in turn, from the first to the last and again: deletes its
  -- fields whose value `expired` says is past. A bounded step (one bucket, a few dozen fields),
  -- taken only as often as a round of all the buckets in `round_ms` needs (Core.sweep_due):
  -- a sweep on every forgetting event read the same fields again and again long before their
  -- end, 5% of a creation's instructions in part (i) of the benchmark. Returns how many it
  -- deleted.
  function Buckets.sweep(key, meta_field, round_ms, expired)
    local spread = spread_of(key, meta_field)
    if spread.swept >= Core.sweep_due(spread.buckets, NOW - spread.round_start, round_ms) then
      return 0
    end
    local bucket = bucket_name(spread, spread.swept)
    spread.swept = spread.swept + 1
    if spread.swept >= spread.buckets then spread.swept, spread.round_start = 0, NOW end
    spread.changed = true
    local entries = redis.call('HGETALL', bucket)
    local gone = {}
    for i = 2, #entries, 2 do
      if expired(entries[i]) then gone[#gone + 1] = entries[i - 1] end
    end
    if #gone > 0 then
      redis.call('HDEL', bucket, unpack(gone))
      spread.fields = spread.fields - #gone
    end
    return #gone
  end
end
