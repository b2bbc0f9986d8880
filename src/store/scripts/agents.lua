-- agents.lua: agents' configuration and status, as stored. Module `Agents`; uses KEYS agents,
-- status, owned, daily, last_assigned, meta (assignment_seq) and no ARGV of its own.

do
  -- Agents' configurations (id -> table, false: none), statuses (id -> status) and last
  -- assignments read or written in this call. (The last two NONE until first written: most
  -- calls read neither; see NONE.)
  local configs, statuses, last_assignments
  Call.on_call(function()
    configs = {}
    statuses, last_assignments = NONE, NONE
  end)

  -- The agent's configuration, or nil for an unknown agent. Only read: it may be shared with
  -- other calls and projects. A caller that changes a configuration takes
  -- `Agents.config_to_change`.
  function Agents.config(agent_id)
    local cfg = configs[agent_id]
    if cfg == nil then
      local raw = redis.call('HGET', K.agents, agent_id)
      cfg = raw and Call.decoded(raw) or false
      configs[agent_id] = cfg
    end
    return cfg or nil
  end

  -- The agent's configuration as a table of this call's own, to change and then save (nil for
  -- an unknown agent); the rest of the call reads it as the agent's configuration. A copy of
  -- its fields only: a nested table (skills, capacities, schedule) is still the shared one, so
  -- a caller replaces such a field rather than change it in place.
  function Agents.config_to_change(agent_id)
    local cfg = Agents.config(agent_id)
    if not cfg then return nil end
    local own = {}
    for field, value in pairs(cfg) do own[field] = value end
    configs[agent_id] = own
    return own
  end

  -- Counts of agents with a precedence level, with channel restrictions and with capacities
  -- per channel: levels and channel pools only come into play in projects that use them.
  local function counted(cfg)
    return (cfg and cfg.priority) and 1 or 0, (cfg and cfg.channels ~= nil) and 1 or 0,
      Core.has_channel_capacity(cfg) and 1 or 0
  end

  -- Stores the agent's configuration (nil: removes it); `previous` is what it was.
  function Agents.save(agent_id, cfg, previous)
    local levelled_before, restricted_before, capacities_before = counted(previous)
    local levelled, restricted, capacities = counted(cfg)
    if levelled ~= levelled_before then Meta.add('level_agents', levelled - levelled_before) end
    if restricted ~= restricted_before then
      Meta.add('restricted_agents', restricted - restricted_before)
    end
    if capacities ~= capacities_before then
      Meta.add('capacity_agents', capacities - capacities_before)
    end
    configs[agent_id] = cfg or false
    if cfg then
      redis.call('HSET', K.agents, agent_id, cjson.encode(cfg))
      -- Read on every assignment (see Call.keep_unpacked).
      Call.keep_unpacked(K.agents, 'hash')
    else
      redis.call('HDEL', K.agents, agent_id)
    end
  end

  -- Every agent's id.
  function Agents.ids()
    return redis.call('HKEYS', K.agents)
  end

  -- How many open conversations count in the agent's load (see load.lua).
  function Agents.load(agent_id)
    return Load.of_agent(agent_id)
  end

  function Agents.status(agent_id)
    local status = statuses[agent_id]
    if status == nil then
      status = redis.call('HGET', K.status, agent_id) or 'offline'
      statuses = with_entry(statuses, agent_id, status)
    end
    return status
  end

  -- Stores the agent's status (nil: forgets it, for a removed agent), keeping the cache.
  function Agents.write_status(agent_id, status)
    if status then
      redis.call('HSET', K.status, agent_id, status)
    else
      redis.call('HDEL', K.status, agent_id)
    end
    statuses = with_entry(statuses, agent_id, status or 'offline')
  end

  -- Whether its status lets it receive conversations, under the project's settings.
  function Agents.status_receives(agent_id)
    return Core.status_receives(Agents.status(agent_id), SETTINGS.include_busy,
      SETTINGS.include_offline)
  end

  -- Has the agent received its `daily_limit` of assignments today (the project's local day)?
  function Agents.daily_limit_reached(agent_id, cfg)
    if cfg.daily_limit == nil then return false end
    return Core.daily_limit_reached(cfg, redis.call('HGET', K.daily, agent_id))
  end

  -- Counts one more assignment today; returns the day's count.
  function Agents.count_assignment(agent_id)
    local count = redis.call('HINCRBY', K.daily, agent_id, '1')
    -- The day's first count of an agent (the first of the project makes the hash: see
    -- Agents.new_day), written again on every assignment (see Call.keep_unpacked).
    if count == 1 then Call.keep_unpacked(K.daily, 'hash') end
    return count
  end

  -- The number of the agent's last assignment among the project's (0: none since longest_idle
  -- was on): the longer ago, the longer idle.
  function Agents.last_assignment(agent_id)
    local n = last_assignments[agent_id]
    if n == nil then
      n = tonumber(redis.call('HGET', K.last_assigned, agent_id)) or 0
      last_assignments = with_entry(last_assignments, agent_id, n)
    end
    return n
  end

  -- Numbers an assignment to the agent (for longest_idle).
  function Agents.note_assignment(agent_id)
    local n = Meta.add('assignment_seq', 1)
    redis.call('HSET', K.last_assigned, agent_id, n)
    last_assignments = with_entry(last_assignments, agent_id, n)
  end

  -- Forgets what only a present agent needs (its removal).
  function Agents.forget(agent_id)
    redis.call('HDEL', K.last_assigned, agent_id)
    redis.call('HDEL', K.missed, agent_id)
    if last_assignments ~= NONE then last_assignments[agent_id] = nil end
  end

  -- A new local day: every day's count starts again.
  function Agents.new_day()
    redis.call('DEL', K.daily)
  end
end
