-- meta.lua: the project's counters. Module `Meta`; uses KEYS meta and no ARGV of its own.
--
-- The `meta` hash holds: agent_seq (agents' insertion order), arrival_seq (waiting order),
-- level_agents, restricted_agents and capacity_agents (agents with a precedence level, with
-- channel rights, with a capacity per channel: levels and channel pools only come into play in
-- projects that use them), assignment_seq (numbers assignments, for longest_idle), pool_count
-- (requirement pools), vtime (the weighted strategy's virtual time), rr:<pool> (round robin's
-- last served), day (the project's local day), day_timer (the day whose midnight timer is
-- armed), events_generation (the newest generation of event records, whose expiry is set),
-- owned_by_agent ('1' once each agent's load is in a key of its own: see load.lua),
-- visitor_buckets and visitors_in_hash (once visitors are spread over buckets: visitors.lua).

do
  -- The counters every call may need, read in one HMGET.
  local FIELDS = {
    'day', 'level_agents', 'restricted_agents', 'vtime', 'pool_count', 'day_timer', 'arrival_seq',
    'events_generation', 'capacity_agents', OWNED_BY_AGENT_FIELD, VISITOR_BUCKETS_FIELD,
    'visitors_in_hash',
  }
  local cache
  -- The counters read as numbers in this call (tonumber parses text: several are asked for on
  -- every event).
  local numbers
  -- Whether this call numbered arrivals (see `next_arrival`).
  local arrivals_numbered
  Call.on_call(function()
    cache, numbers = {}, {}
    arrivals_numbered = false
    local values = redis.call('HMGET', K.meta, unpack(FIELDS))
    for i, field in ipairs(FIELDS) do cache[field] = values[i] end
  end)

  -- A counter as read or written in this call (one of FIELDS).
  function Meta.get(field)
    return cache[field]
  end

  function Meta.number(field)
    local n = numbers[field]
    if n == nil then
      n = tonumber(cache[field]) or 0
      numbers[field] = n
    end
    return n
  end

  -- Stores a counter (one of FIELDS), keeping the cache.
  function Meta.set(field, value)
    redis.call('HSET', K.meta, field, value)
    cache[field], numbers[field] = value, nil
  end

  -- Adds to a counter (one of FIELDS); returns the new value.
  function Meta.add(field, delta)
    cache[field] = redis.call('HINCRBY', K.meta, field, delta)
    numbers[field] = cache[field]
    return cache[field]
  end

  -- The next arrival number (orders waiting conversations of equal priority). Counted in the
  -- cache, and written back once per call: a batch of new conversations costs one write. A call
  -- that fails halfway (a bug; Redis keeps the writes made before the error) leaves the counter
  -- behind, and later arrivals may share a number: their members in the queues stay distinct
  -- (they end with the conversation id), only their order among themselves is by id.
  function Meta.next_arrival()
    local n = Meta.number('arrival_seq') + 1
    cache.arrival_seq, numbers.arrival_seq = n, n
    arrivals_numbered = true
    return n
  end
  Call.on_call_end(function()
    if arrivals_numbered then
      redis.call('HSET', K.meta, 'arrival_seq', string.format('%d', cache.arrival_seq))
    end
  end)

  -- The next agent insertion number (round robin's default order).
  function Meta.next_agent_seq()
    return redis.call('HINCRBY', K.meta, 'agent_seq', 1)
  end
end
