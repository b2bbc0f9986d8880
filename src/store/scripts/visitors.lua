-- visitors.lua: which agent last served each visitor, for `returning_visitors`. Module
-- `Visitors`; uses KEYS visitors (and its buckets), served, visitor_seen, meta
-- (visitor_buckets, visitors_in_hash) and ARGV now and store_layout.
--
-- `visitors` maps a visitor to "<agent>|<minute>", the agent that served them last and when
-- (minutes since the epoch), and the list `served` notes "<visitor>|<minute>" each time a
-- visitor is served, in that order: forgetting reads its head (see Core.expired_head). An
-- earlier release kept the agent alone in `visitors` and the time in the sorted set
-- `visitor_seen` (96 B a visitor, where a list entry costs about 17): such entries are still
-- read, and forgotten through that set, so an upgrade forgets nobody early and keeps nobody
-- late.
--
-- In store layout 2 the map is spread over buckets, "visitors:<n>" (see buckets.lua): a
-- visitor then costs about 38 B there instead of 74, and `served` is not written (17 B more):
-- forgetting goes through the buckets in turn instead, reading the minute in each value
-- (see SWEEPS_PER_MEMORY). The first call of a worker writing layout 2 starts the buckets and
-- marks `meta` (visitor_buckets), which every worker of this release follows, whatever layout
-- it writes. What was remembered before stays where it was (meta's visitors_in_hash is '1'
-- while `visitors` holds any) and is still read there; serving a visitor again moves it to
-- its bucket, and forgetting empties `visitors` and `served` within the visitor memory.

do
  -- The default of `visitor_memory_days`, should the settings lack it.
  local DEFAULT_MEMORY_DAYS = 30
  -- At most this many visitors are forgotten per event that forgets (see
  -- Conversations.forget_old), from each of `served` and `visitor_seen`.
  local FORGOTTEN_PER_EVENT = 64
  local MS_PER_MINUTE = 60000
  -- Spread over buckets, each visitor is looked at this many times over the visitor memory
  -- (a round of the buckets every eighth of it): forgotten at most an eighth of the memory
  -- late, when events come often enough for the round to keep its pace (one bucket per
  -- forgetting event at most; see Conversations.forget_old).
  local SWEEPS_PER_MEMORY = 8
  -- `meta`'s fields: how the buckets stand, and whether `visitors` still holds some.
  local BUCKETS = VISITOR_BUCKETS_FIELD
  local IN_HASH = 'visitors_in_hash'

  -- Starts the buckets, once, when this worker writes store layout 2 (an earlier release reads
  -- `visitors` alone: layout 2 is for after the last of its workers is gone).
  function Visitors.move_to_buckets()
    if LAYOUT ~= '2' or USES.visitor_buckets then return end
    if redis.call('EXISTS', K.visitors) == 1 then Meta.set(IN_HASH, '1') end
    Buckets.start(BUCKETS)
  end

  -- The values of these visitors, by position (false: none), and where each was found
  -- (true: in its bucket).
  local function values_of(ids)
    if not USES.visitor_buckets then return redis.call('HMGET', K.visitors, unpack(ids)), {} end
    local values = Buckets.get_many(K.visitors, BUCKETS, ids)
    -- Those not in their bucket, and their positions, looked for in `visitors` if it holds any.
    local bucketed, missing, positions = {}, {}, {}
    for i, id in ipairs(ids) do
      if values[i] then
        bucketed[i] = true
      elseif USES.visitors_in_hash then
        missing[#missing + 1] = id
        positions[#positions + 1] = i
      end
    end
    if #missing > 0 then
      local found = redis.call('HMGET', K.visitors, unpack(missing))
      for j, i in ipairs(positions) do values[i] = found[j] end
    end
    return values, bucketed
  end

  local function memory_ms()
    return (tonumber(SETTINGS.visitor_memory_days) or DEFAULT_MEMORY_DAYS) * Core.MS_PER_DAY
  end

  -- The agent that last served this visitor, if remembered and still an agent of the project.
  function Visitors.remembered_agent(visitor_id)
    if not visitor_id then return nil end
    local value
    if USES.visitor_buckets then
      value = Buckets.get(K.visitors, BUCKETS, visitor_id)
      if not value and USES.visitors_in_hash then
        value = redis.call('HGET', K.visitors, visitor_id)
      end
    else
      value = redis.call('HGET', K.visitors, visitor_id)
    end
    if not value then return nil end
    local agent_id, minute = Core.split_stamped(value)
    local seen = minute and minute * MS_PER_MINUTE
      or tonumber(redis.call('ZSCORE', K.visitor_seen, visitor_id))
    if not seen or seen < NOW - memory_ms() then return nil end
    if Agents.config(agent_id) then return agent_id end
    return nil
  end

  -- The call's minute (NOW's), as a visitor's memory notes it; made once per call.
  local now_minute
  Call.on_call(function() now_minute = nil end)

  function Visitors.remember(visitor_id, agent_id)
    if not visitor_id then return end
    if not now_minute then now_minute = string.format('%d', math.floor(NOW / MS_PER_MINUTE)) end
    local value = agent_id .. '|' .. now_minute
    if USES.visitor_buckets then
      Buckets.set(K.visitors, BUCKETS, visitor_id, value)
      if USES.visitors_in_hash then redis.call('HDEL', K.visitors, visitor_id) end
    else
      redis.call('HSET', K.visitors, visitor_id, value)
      redis.call('RPUSH', K.served, visitor_id .. '|' .. now_minute)
    end
  end

  -- Forgets visitors not served for longer than the memory (a bounded number): those of the
  -- next bucket (spread), those at the head of `served` whose memory in `visitors` has not been
  -- renewed since, and those an earlier release remembered.
  function Visitors.forget_old()
    local cutoff_ms = NOW - memory_ms()
    if USES.visitor_buckets then
      local cutoff_minute = cutoff_ms / MS_PER_MINUTE
      Buckets.sweep(K.visitors, BUCKETS, memory_ms() / SWEEPS_PER_MEMORY, function(value)
        -- (A value of another form, which no release writes in a bucket, goes too.)
        local minute = tonumber(string.match(value, '|(%d+)$'))
        return not minute or minute < cutoff_minute
      end)
    end
    local ids, _, count = Call.expired_head(K.served, cutoff_ms / MS_PER_MINUTE,
      FORGOTTEN_PER_EVENT)
    if count > 0 then
      local values, bucketed = values_of(ids)
      local gone, gone_from_hash = {}, {}
      for i = 1, count do
        local _, minute = Core.split_stamped(values[i] or '')
        -- Served again since (a later entry speaks for it), or an earlier release's: kept.
        if minute and minute * MS_PER_MINUTE < cutoff_ms then
          local list = bucketed[i] and gone or gone_from_hash
          list[#list + 1] = ids[i]
        end
      end
      if #gone > 0 then Buckets.delete(K.visitors, BUCKETS, gone) end
      if #gone_from_hash > 0 then redis.call('HDEL', K.visitors, unpack(gone_from_hash)) end
      redis.call('LTRIM', K.served, count, -1)
    end
    -- What was remembered before the buckets is gone: look for it no more.
    if USES.visitors_in_hash and redis.call('EXISTS', K.visitors) == 0 then
      Meta.set(IN_HASH, '0')
    end

    local legacy = redis.call('ZRANGE', K.visitor_seen, '-inf', cutoff_ms, 'BYSCORE',
      'LIMIT', 0, FORGOTTEN_PER_EVENT)
    if #legacy > 0 then
      local values = redis.call('HMGET', K.visitors, unpack(legacy))
      local gone = {}
      for i, visitor_id in ipairs(legacy) do
        -- Only the earlier release's form: one served since is this release's to forget.
        if values[i] and not string.find(values[i], '|', 1, true) then
          gone[#gone + 1] = visitor_id
        end
      end
      if #gone > 0 then redis.call('HDEL', K.visitors, unpack(gone)) end
      redis.call('ZREM', K.visitor_seen, unpack(legacy))
    end
  end
end
