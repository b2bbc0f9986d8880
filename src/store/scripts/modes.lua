-- modes.lua: the modes where the machine does not choose. Broadcast offers a conversation to
-- every eligible agent (the first claim wins); custom asks an external allocator and falls
-- back to the new-visitor strategy when no decision comes in time. Module `Modes`; uses KEYS
-- held, offers, by_load and ARGV now.

do
  -- The default of `custom_timeout_seconds`, should the settings lack it, and the shortest.
  local DEFAULT_CUSTOM_TIMEOUT_SECONDS = 10
  local SHORTEST_CUSTOM_TIMEOUT_SECONDS = 1

  -- Ends an offer or a pending request (claimed, decided, closed, timed out, mode changed).
  function Modes.release_hold(conversation_id, record)
    if record.s ~= 'offered' and record.s ~= 'pending' then return end
    redis.call('ZREM', K.held, conversation_id)
    for _, agent_id in ipairs(record.o or {}) do
      redis.call('ZREM', K.offers, Core.pair(agent_id, conversation_id))
    end
    record.o = nil
  end

  -- Offers the conversation to these agents; the first claim wins.
  function Modes.offer(conversation_id, record, agents)
    record.a = nil
    record.s = 'offered'
    record.o = agents
    redis.call('ZADD', K.held, 0, conversation_id)
    for _, agent_id in ipairs(agents) do
      redis.call('ZADD', K.offers, 0, Core.pair(agent_id, conversation_id))
    end
    local sequence = Call.next_sequence(record)
    Records.save(conversation_id, record)
    Call.emit('conversation.offered', { conversation_id = conversation_id, agent_ids = agents },
      sequence)
  end

  -- Offers the conversation (broadcast) or asks for a decision (custom). False when no agent
  -- is eligible, so the caller queues it.
  function Modes.hold(conversation_id, record, excluded)
    local mode = SETTINGS.mode
    if mode ~= 'broadcast' and mode ~= 'custom' then return false end
    local agents = Pools.eligible_agents(excluded, record)
    if #agents == 0 then return false end
    if mode == 'broadcast' then
      Modes.offer(conversation_id, record, agents)
      return true
    end
    record.a = nil
    redis.call('ZADD', K.held, 0, conversation_id)
    record.s = 'pending'
    record.rq = (tonumber(record.rq) or 0) + 1
    local candidates = {}
    for i, agent_id in ipairs(agents) do
      candidates[i] = {
        agent_id = agent_id, open = Agents.load(agent_id),
        max_concurrent = Core.max_concurrent(Agents.config(agent_id)),
      }
    end
    local sequence = Call.next_sequence(record)
    Records.save(conversation_id, record)
    Call.emit('allocation.requested', { conversation_id = conversation_id, candidates = candidates },
      sequence)
    local timeout = tonumber(SETTINGS.custom_timeout_seconds) or DEFAULT_CUSTOM_TIMEOUT_SECONDS
    Call.arm_timer(math.max(timeout, SHORTEST_CUSTOM_TIMEOUT_SECONDS) * 1000,
      'custom_timeout:' .. conversation_id .. ':' .. record.rq,
      { timer = 'custom_timeout', conversation_id = conversation_id, token = record.rq })
    return true
  end

  -- The agent can no longer take offers: its offers are withdrawn, and a conversation left with
  -- no agent offered goes back to waiting.
  function Modes.withdraw_offers(agent_id)
    for _, conversation_id in ipairs(Call.take_agent_members(K.offers, agent_id)) do
      local record = Records.get(conversation_id)
      if record and record.s == 'offered' then
        local left = {}
        for _, offered in ipairs(record.o or {}) do
          if offered ~= agent_id then left[#left + 1] = offered end
        end
        if #left == 0 then
          Modes.release_hold(conversation_id, record)
          Queues.enqueue(conversation_id, record, 'offer_withdrawn')
        else
          record.o = left
          Records.save(conversation_id, record)
        end
      end
    end
  end

  -- The oldest offer standing for the agent, if any (a claim without a conversation takes it).
  function Modes.oldest_offer(agent_id)
    local min, max = Core.agent_range(agent_id)
    local offered = redis.call('ZRANGE', K.offers, min, max, 'BYLEX', 'LIMIT', 0, 1)[1]
    return offered and Core.after_bar(offered)
  end

  -- The mode changed: offers and pending requests end, and their conversations wait to be
  -- handled the new way.
  function Modes.requeue_held()
    for _, conversation_id in ipairs(redis.call('ZRANGE', K.held, 0, -1)) do
      local record = Records.get(conversation_id)
      if record then
        Modes.release_hold(conversation_id, record)
        Queues.enqueue(conversation_id, record, Queues.why_waiting())
      else
        redis.call('ZREM', K.held, conversation_id)
      end
    end
  end
end
