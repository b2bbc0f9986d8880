-- handlers_agents.lua: the handlers of events about a project's settings and its agents, and
-- of its agents' schedule timers. Modules `Handlers` (one function per inbound event type,
-- called with the event's checked data) and `Timers` (one per timer, called with the data of
-- `timer.fired`); handlers_conversations.lua adds the others. A handler returns nil when the
-- event was applied (whatever it decided), or 'stale' or 'duplicate' when it was not (see
-- order.lua): then it has changed nothing. Uses KEYS settings, passes and, through the modules
-- above, the others.

do
  -- A merge patch of settings: each setting is a thing of its own, so a patch that is older
  -- than the last change of one setting still applies to the others.
  Handlers['project.configured'] = function(patch)
    local things = {}
    for field in pairs(patch) do things[#things + 1] = 'c|' .. field end
    Versions.read(things)
    local previous_mode = SETTINGS.mode
    local previous_aging = SETTINGS.priority_aging_seconds
    local previous_inactive_after = SETTINGS.inactive_after_seconds
    local current = Call.settings_to_change()
    local outcomes, changed = {}, {}
    for field, value in pairs(patch) do
      local outcome = Versions.judge_thing('c|' .. field)
      outcomes[outcome] = true
      if outcome == 'apply' then
        if value == NULL then current[field] = nil else current[field] = value end
        changed[#changed + 1] = 'c|' .. field
      end
    end
    if #things > 0 and #changed == 0 then return Core.combined_outcome(outcomes) end
    Versions.advance(changed)
    if next(current) == nil then
      redis.call('DEL', K.settings)
    else
      redis.call('SET', K.settings, cjson.encode(current))
    end
    Call.settings_changed(current)
    if SETTINGS.inactive_after_seconds ~= previous_inactive_after then
      Activity.setting_changed()
    end
    -- include_busy / include_offline, tie_break, inactivity change who is eligible and how
    -- they are ordered: rebuild the pools once.
    Pools.refresh_all()
    if SETTINGS.mode ~= previous_mode then Modes.requeue_held() end
    if SETTINGS.priority_aging_seconds ~= previous_aging then Queues.rescore() end
  end


  -- Whether an event about an agent comes before its removal: the removal's version speaks for
  -- everything the agent had then, also once the agent is upserted again by a later event (a
  -- field set before the removal, arriving after both, must not come back).
  local function before_removal(agent_id)
    return Versions.set_later('r|' .. agent_id)
  end

  Handlers['agent.status_changed'] = function(data)
    local agent_id = data.agent_id
    local status = 's|' .. agent_id
    Versions.read({ status, 'r|' .. agent_id })
    if before_removal(agent_id) then return 'stale' end
    local outcome = Versions.judge_thing(status)
    if outcome ~= 'apply' then return outcome end
    Presence.set(agent_id, data.status)
    Versions.advance({ status })
  end

  -- Applies what the agent's schedule says now (`state`, computed by the worker: online, and
  -- when that next changes) and arms the timer for that change. A status set by hand stands
  -- until then. `sched_n` numbers the schedule's timers: an older timer, or one of a replaced
  -- schedule, finds another number and does nothing. The switch is an event about the agent's
  -- status at the boundary's time (a timer's `time` is when it was due): a status set by hand
  -- later than that stands. `cfg` is the agent's configuration as a table of the call's own,
  -- which this changes and saves.
  local function apply_schedule(agent_id, cfg, state)
    cfg.sched_n = (tonumber(cfg.sched_n) or 0) + 1
    Presence.switch(agent_id, cfg, state.online and 'online' or 'offline', 'schedule', false)
    Agents.save(agent_id, cfg, cfg)
    local next_ms = tonumber(state.next_ms)
    if next_ms then
      Call.arm_timer(math.max(next_ms - NOW, 0), 'schedule:' .. agent_id .. ':' .. cfg.sched_n,
        { timer = 'schedule', agent_id = agent_id, token = cfg.sched_n, schedule = cfg.schedule })
    end
  end

  -- A schedule boundary: the agent switches as its schedule says, and the next switch is
  -- armed.
  Timers['schedule'] = function(data)
    local cfg = Agents.config(data.agent_id)
    if not cfg or tonumber(cfg.sched_n) ~= tonumber(data.token) or not data._schedule then return end
    apply_schedule(data.agent_id, Agents.config_to_change(data.agent_id), data._schedule)
  end

  -- Local midnight: nothing to do here, the start of every call already begins the new day.
  Timers['new_day'] = function(_) end

  -- What an agent's configuration holds besides its fields: the insertion sequence, the number
  -- of its schedule's timers and the sequence of its published status changes.
  local INTERNAL_AGENT_FIELDS = { seq = true, sched_n = true, q = true }

  -- One agent's patch. Each field is a thing of its own: a field changed later than this
  -- event keeps its value. Returns nil (applied), 'stale' or 'duplicate'.
  local function upsert_agent(patch)
    local agent_id = patch.agent_id
    if before_removal(agent_id) then return 'stale' end
    local previous = Agents.config(agent_id)
    local outcomes, changed, applied = {}, {}, {}
    for field in pairs(patch) do
      -- `_schedule` is the worker's note of what the schedule says now, not a field.
      if field ~= 'agent_id' and field ~= '_schedule' then
        local thing = 'f|' .. agent_id .. '|' .. field
        local outcome = Versions.judge_thing(thing)
        outcomes[outcome] = true
        if outcome == 'apply' then
          changed[#changed + 1] = thing
          applied[field] = true
        end
      end
    end
    local upserted = 'u|' .. agent_id
    if next(outcomes) == nil then
      -- A patch without fields: creates the agent, or repeats an earlier one.
      outcomes[Versions.judge_thing(upserted)] = true
    end
    if previous and #changed == 0 then return Core.combined_outcome(outcomes) end
    local cfg = {}
    for field, value in pairs(previous or { seq = Meta.next_agent_seq() }) do cfg[field] = value end
    for field in pairs(applied) do
      local value = patch[field]
      if value == NULL then cfg[field] = nil else cfg[field] = value end
    end
    if previous and Core.bucket(previous) ~= Core.bucket(cfg) then
      Pools.leave_all(agent_id, previous)
    end
    if applied.schedule and patch.schedule == NULL then
      cfg.sched_n = (tonumber(cfg.sched_n) or 0) + 1 -- its pending timer no longer applies
    end
    local by_channel = Routing.by_channel()
    Agents.save(agent_id, cfg, previous)
    if applied.capacity then Load.recount_channels(agent_id, cfg) end
    Pools.rejoin(agent_id, previous)
    Pools.refresh(agent_id)
    -- The first agent limited by channel: what waits is routed by channel from now on.
    if not by_channel and Routing.by_channel() then Queues.reroute() end
    changed[#changed + 1] = upserted
    Versions.advance(changed)
    if applied.schedule and patch._schedule then
      apply_schedule(agent_id, cfg, patch._schedule)
    end
  end

  Handlers['agent.upserted'] = function(data)
    -- The versions of every part of the event, in one read.
    local things = {}
    for _, patch in ipairs(data.agents) do
      local agent_id = patch.agent_id
      things[#things + 1] = 'r|' .. agent_id
      things[#things + 1] = 'u|' .. agent_id
      things[#things + 1] = 's|' .. agent_id
      for field in pairs(patch) do
        if field ~= 'agent_id' and field ~= '_schedule' then
          things[#things + 1] = 'f|' .. agent_id .. '|' .. field
        end
      end
    end
    Versions.read(things)
    local outcomes = {}
    for _, patch in ipairs(data.agents) do
      outcomes[upsert_agent(patch) or 'apply'] = true
    end
    return Core.combined_outcome(outcomes)
  end

  -- The agent leaves. When it was upserted again by a later event that came first, what this
  -- removal did still happened before that: its conversations are handed over, and the fields
  -- and status set before the removal go back to their defaults.
  Handlers['agent.removed'] = function(data)
    local agent_id = data.agent_id
    local removal, upserted, status = 'r|' .. agent_id, 'u|' .. agent_id, 's|' .. agent_id
    local previous = Agents.config(agent_id)
    local things, fields = { removal, upserted, status }, {}
    for field in pairs(previous or NONE) do
      if not INTERNAL_AGENT_FIELDS[field] then
        fields[field] = 'f|' .. agent_id .. '|' .. field
        things[#things + 1] = fields[field]
      end
    end
    Versions.read(things)
    local outcome = Versions.judge_thing(removal)
    if outcome ~= 'apply' then return outcome end
    if previous and Versions.set_later(upserted) then
      Modes.withdraw_offers(agent_id)
      Conversations.hand_over(agent_id, 'agent_removed')
      local cfg, reset = {}, {}
      for field, value in pairs(previous) do
        if fields[field] and not Versions.set_later(fields[field]) then
          reset[#reset + 1] = fields[field]
        else
          cfg[field] = value
        end
      end
      if Core.bucket(previous) ~= Core.bucket(cfg) then Pools.leave_all(agent_id, previous) end
      Agents.save(agent_id, cfg, previous)
      if fields.capacity then Load.recount_channels(agent_id, cfg) end
      Pools.rejoin(agent_id, previous)
      if not Versions.set_later(status) then
        Agents.write_status(agent_id, nil)
        reset[#reset + 1] = status
      end
      Pools.refresh(agent_id)
      Versions.forget(reset)
      Versions.advance({ removal })
      return
    end
    if previous then Pools.leave_all(agent_id, previous) end
    Agents.save(agent_id, nil, previous)
    -- A status set after the removal, applied before it (the events crossed), stays with its
    -- version, as it would have had the removal come first: it is newer than anything the
    -- removal speaks for.
    local status_stands = Versions.set_later(status)
    if not status_stands then Agents.write_status(agent_id, nil) end
    redis.call('HDEL', K.passes, agent_id)
    Agents.forget(agent_id)
    Pools.rejoin(agent_id, previous)
    Modes.withdraw_offers(agent_id)
    Conversations.hand_over(agent_id, 'agent_removed')
    -- The removal's version now speaks for everything the agent had.
    local superseded = { upserted }
    if not status_stands then superseded[#superseded + 1] = status end
    for _, thing in pairs(fields) do superseded[#superseded + 1] = thing end
    Versions.forget(superseded)
    Versions.advance({ removal })
  end
end
