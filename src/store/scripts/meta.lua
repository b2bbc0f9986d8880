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

-- What the project's counters say it uses, read on nearly every event (where a function call
-- through `Meta.get` for each was a measurable share of a creation). Set from the counters at
-- the start of each call and again whenever one of them changes; only read elsewhere.
--   agent_load_keys     each agent's load is a key of its own (owned_by_agent; see load.lua)
--   channel_pools       some agents serve only some channels or have a capacity per channel,
--                       so a conversation's channel decides its pool
--   channel_capacities  some agents have a capacity per channel
--   levels              some agents have a precedence level
--   requirement_pools   some pools have a requirement (pool_count)
--   visitor_buckets     visitors are spread over buckets (visitor_buckets; see visitors.lua)
--   visitors_in_hash    the one `visitors` hash still holds some of them
local USES = {}

do
  -- The counters every call may need, read in one HMGET.
  local FIELDS = {
    'day', 'level_agents', 'restricted_agents', 'vtime', 'pool_count', 'day_timer', 'arrival_seq',
    'events_generation', 'capacity_agents', OWNED_BY_AGENT_FIELD, VISITOR_BUCKETS_FIELD,
    'visitors_in_hash',
  }
  -- Where each of FIELDS is in the HMGET's reply.
  local POSITION = {}
  for i = 1, #FIELDS do POSITION[FIELDS[i]] = i end
  -- The counters as read or written in this call: FIELDS in the HMGET's reply itself, by
  -- POSITION (a table keyed by name, built again on every call, cost about 10 thousand
  -- instructions per call), and any other counter written (`add`) in a table of its own, made
  -- when first needed.
  local values, others

  -- Where the counters USES is derived from are in `values`.
  local OWNED_AT, CAPACITY_AT, RESTRICTED_AT = POSITION[OWNED_BY_AGENT_FIELD],
    POSITION.capacity_agents, POSITION.restricted_agents
  local LEVELS_AT, POOLS_AT = POSITION.level_agents, POSITION.pool_count
  local BUCKETS_AT, IN_HASH_AT = POSITION[VISITOR_BUCKETS_FIELD], POSITION.visitors_in_hash

  -- The counters USES was last derived from, in the order of `derive_uses`' checks (any
  -- project's and call's: the same counters say the same). Most calls find them unchanged,
  -- where deriving USES again cost a call of one event about 2.5 thousand instructions.
  local last_counters = {}

  -- Sets USES from the counters as this call holds them (a count is text, or a number once
  -- this call added to it; absent, false), compared as the modules compared them before.
  local function derive_uses()
    local owned, capacity, restricted, levels, pools, buckets, in_hash = values[OWNED_AT],
      values[CAPACITY_AT], values[RESTRICTED_AT], values[LEVELS_AT], values[POOLS_AT],
      values[BUCKETS_AT], values[IN_HASH_AT]
    local last = last_counters
    if owned == last[1] and capacity == last[2] and restricted == last[3] and levels == last[4]
      and pools == last[5] and buckets == last[6] and in_hash == last[7] then
      return
    end
    last_counters = { owned, capacity, restricted, levels, pools, buckets, in_hash }
    USES.agent_load_keys = owned == '1'
    USES.channel_capacities = (tonumber(capacity) or 0) > 0
    USES.channel_pools = USES.channel_capacities or (tonumber(restricted) or 0) > 0
    USES.levels = (tonumber(levels) or 0) ~= 0
    USES.requirement_pools = (tonumber(pools) or 0) ~= 0
    USES.visitor_buckets = buckets and true or false
    USES.visitors_in_hash = in_hash == '1'
  end
  -- The counters USES is derived from.
  local DERIVED_FROM = {
    [OWNED_BY_AGENT_FIELD] = true, capacity_agents = true, restricted_agents = true,
    level_agents = true, pool_count = true, [VISITOR_BUCKETS_FIELD] = true,
    visitors_in_hash = true,
  }
  -- The counters read as numbers in this call (tonumber parses text: several are asked for on
  -- every event).
  local numbers
  -- Whether this call numbered arrivals (see `next_arrival`).
  local arrivals_numbered
  Call.on_call(function()
    values = redis.call('HMGET', K.meta, unpack(FIELDS))
    others, numbers = NONE, {}
    arrivals_numbered = false
    derive_uses()
  end)

  -- Keeps a counter's value as this call wrote it.
  local function remember(field, value)
    local position = POSITION[field]
    if position then
      values[position] = value
      if DERIVED_FROM[field] then derive_uses() end
    else
      others = with_entry(others, field, value)
    end
  end

  -- A counter as read (one of FIELDS) or written in this call.
  function Meta.get(field)
    local position = POSITION[field]
    if position then return values[position] end
    return others[field]
  end

  function Meta.number(field)
    local n = numbers[field]
    if n == nil then
      n = tonumber(Meta.get(field)) or 0
      numbers[field] = n
    end
    return n
  end

  -- Stores a counter (one of FIELDS), keeping what this call holds.
  function Meta.set(field, value)
    redis.call('HSET', K.meta, field, value)
    remember(field, value)
    numbers[field] = nil
  end

  -- Adds to a counter (one of FIELDS, or another such as assignment_seq); returns the new
  -- value.
  function Meta.add(field, delta)
    local value = redis.call('HINCRBY', K.meta, field, delta)
    remember(field, value)
    numbers[field] = value
    return value
  end

  -- The next arrival number (orders waiting conversations of equal priority). Counted in the
  -- cache, and written back once per call: a batch of new conversations costs one write. A call
  -- that fails halfway (a bug; Redis keeps the writes made before the error) leaves the counter
  -- behind, and later arrivals may share a number: their members in the queues stay distinct
  -- (they end with the conversation id), only their order among themselves is by id.
  function Meta.next_arrival()
    local n = Meta.number('arrival_seq') + 1
    remember('arrival_seq', n)
    numbers.arrival_seq = n
    arrivals_numbered = true
    return n
  end
  Call.on_call_end(function()
    if arrivals_numbered then
      redis.call('HSET', K.meta, 'arrival_seq', string.format('%d', Meta.number('arrival_seq')))
    end
  end)

  -- Notes the newest generation of event records, whose expiry the call set: once per
  -- generation of each project, which is also when the counters are kept unpacked (see
  -- Call.keep_unpacked), whatever their number. Every call reads a dozen of them with one
  -- HMGET, which in a listpack reads from its start for each field (about 600 instructions a
  -- field in the benchmark's project, twice a hash table's lookup): one hash per project, so
  -- its few hundred bytes more are nothing. (Packed again only when Redis loads its data from
  -- disk, and kept unpacked again within a generation.)
  function Meta.note_generation(generation)
    Meta.set('events_generation', generation)
    Call.keep_unpacked(K.meta, 'hash', 1)
  end

  -- The next agent insertion number (round robin's default order).
  function Meta.next_agent_seq()
    return redis.call('HINCRBY', K.meta, 'agent_seq', 1)
  end
end
