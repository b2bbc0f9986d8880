-- presence.lua: an agent's status changing, whoever changes it: the agent (agent.status_changed),
-- its schedule, or missed assignments (`away_after_missed`). Module `Presence`; uses KEYS
-- missed and, through the modules above, status and the pools.

do
  -- The agent's status is now `status`: the pools follow; offers it can no longer take are
  -- withdrawn; with `release_on_offline`, going offline hands its conversations over.
  function Presence.set(agent_id, status)
    Agents.write_status(agent_id, status)
    if not Pools.refresh(agent_id) then Modes.withdraw_offers(agent_id) end
    if status == 'offline' and SETTINGS.release_on_offline and Agents.config(agent_id) then
      Conversations.hand_over(agent_id, 'owner_unavailable')
    end
  end

  -- Switches the agent to `status` on the machine's own decision (`reason`: schedule,
  -- missed_assignments) and publishes it, unless a status set later than the current event's
  -- time stands. `cfg` is the agent's configuration as a table of the call's own
  -- (`Agents.config_to_change`), where the sequence of its published statuses is counted;
  -- `save` says whether to store it here (a caller that changes it further stores it itself).
  -- Returns whether it switched.
  function Presence.switch(agent_id, cfg, status, reason, save)
    local thing = 's|' .. agent_id
    if Agents.status(agent_id) == status or Versions.judge_thing(thing) ~= 'apply' then
      return false
    end
    Presence.set(agent_id, status)
    Versions.advance({ thing })
    local sequence = Call.next_sequence(cfg)
    if save then Agents.save(agent_id, cfg, cfg) end
    Call.emit('agent.status_changed', { agent_id = agent_id, status = status, reason = reason },
      sequence)
    return true
  end

  -- An automatic assignment of the agent's was moved away by the reply timeout: with
  -- `away_after_missed`, that many in a row set an online agent busy.
  function Presence.missed(agent_id)
    local limit = tonumber(SETTINGS.away_after_missed) or 0
    if limit == 0 then return end
    local missed = redis.call('HINCRBY', K.missed, agent_id, '1')
    if missed < limit then return end
    redis.call('HDEL', K.missed, agent_id)
    if Agents.config(agent_id) and Agents.status(agent_id) == 'online' then
      Presence.switch(agent_id, Agents.config_to_change(agent_id), 'busy', 'missed_assignments',
        true)
    end
  end

  -- The agent replied: its missed assignments in a row start again from none.
  function Presence.replied(agent_id)
    if (tonumber(SETTINGS.away_after_missed) or 0) == 0 then return end
    redis.call('HDEL', K.missed, agent_id)
  end
end
