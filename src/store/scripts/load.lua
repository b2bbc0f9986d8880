-- load.lua: what an agent holds, and what of it counts in its load. Module `Load`; uses KEYS
-- owned, inactive, channel_owned and ARGV now.
--
-- An agent's load is the count of its members of `owned`, "agent|conversation": its open
-- conversations, except the inactive ones (`inactive_after_seconds`: no visitor message for
-- that long), which move to `inactive` until the visitor writes again, plus the closed ones
-- still in their wrap-up (`wrap_up_seconds`), whose slot its agent gets back when the wrap-up
-- timer fires. For each channel an agent has a `capacity` for, `channel_owned` counts the
-- same members by channel, "agent|channel|conversation". Counting members, not keeping
-- counters, is what keeps capacity from drifting: a count is always what is held.
--
-- A record says which set holds it: `ia` (inactive) while open, `wu` (the wrap-up timer's
-- number) once closed and until the wrap-up ends; otherwise an open record with an agent is in
-- `owned`. Every change of who holds what goes through here.

do
  -- The "agent|channel|conversation" member, when the agent has a capacity for the channel.
  local function channel_member(agent_id, conversation_id, record)
    if not Core.channel_capacity(Agents.config(agent_id) or NONE, record.ch) then return nil end
    return agent_id .. '|' .. record.ch .. '|' .. conversation_id
  end

  local function count(agent_id, conversation_id, record)
    redis.call('ZADD', K.owned, '0', Core.pair(agent_id, conversation_id))
    local member = channel_member(agent_id, conversation_id, record)
    if member then redis.call('ZADD', K.channel_owned, '0', member) end
  end

  local function uncount(agent_id, conversation_id, record)
    redis.call('ZREM', K.owned, Core.pair(agent_id, conversation_id))
    local member = channel_member(agent_id, conversation_id, record)
    if member then redis.call('ZREM', K.channel_owned, member) end
  end

  -- The agent now holds the conversation, and it counts.
  function Load.hold(agent_id, conversation_id, record)
    count(agent_id, conversation_id, record)
    record.ia = nil
  end

  -- The conversation leaves its agent (`record.a`): released, closed (after any wrap-up), or
  -- moved. The record keeps the agent.
  function Load.drop(conversation_id, record)
    local agent_id = record.a
    if not agent_id then return end
    if record.ia then
      redis.call('ZREM', K.inactive, Core.pair(agent_id, conversation_id))
    else
      uncount(agent_id, conversation_id, record)
    end
    record.ia, record.wu = nil, nil
  end

  -- Open conversations of the agent that count, per channel it has a capacity for.
  function Load.of_channel(agent_id, channel)
    local prefix = agent_id .. '|' .. channel .. '|'
    return redis.call('ZLEXCOUNT', K.channel_owned, '[' .. prefix, '[' .. prefix .. '\255')
  end

  -- Whether the agent may take one more conversation of this channel (its capacity for it).
  function Load.channel_room(agent_id, cfg, channel)
    if not Core.channel_capacity(cfg, channel) then return true end
    return Core.has_channel_room(cfg, channel, Load.of_channel(agent_id, channel))
  end

  -- The conversation went quiet: it stays with its agent and stops counting.
  function Load.deactivate(conversation_id, record)
    if record.ia or not record.a then return end
    uncount(record.a, conversation_id, record)
    redis.call('ZADD', K.inactive, NOW_TEXT, Core.pair(record.a, conversation_id))
    record.ia = 1
  end

  -- The visitor wrote again: the conversation counts again, whatever the agent's load.
  function Load.activate(conversation_id, record)
    if not record.ia then return end
    redis.call('ZREM', K.inactive, Core.pair(record.a, conversation_id))
    count(record.a, conversation_id, record)
    record.ia = nil
  end

  -- Takes everything the agent holds (counted, inactive, in wrap-up); returns the conversation
  -- ids. The records still name the agent: the caller settles each.
  function Load.take_all(agent_id)
    local ids = Call.take_agent_members(K.owned, agent_id)
    for _, conversation_id in ipairs(Call.take_agent_members(K.inactive, agent_id)) do
      ids[#ids + 1] = conversation_id
    end
    local min, max = Core.agent_range(agent_id)
    redis.call('ZREMRANGEBYLEX', K.channel_owned, min, max)
    return ids
  end

  -- The agent's capacities changed: its members of `channel_owned` are written again from
  -- what it holds, for the channels it has a capacity for now.
  function Load.recount_channels(agent_id, cfg)
    local min, max = Core.agent_range(agent_id)
    redis.call('ZREMRANGEBYLEX', K.channel_owned, min, max)
    if not Core.has_channel_capacity(cfg) then return end
    for _, member in ipairs(redis.call('ZRANGE', K.owned, min, max, 'BYLEX')) do
      local conversation_id = Core.after_bar(member)
      local record = Records.get(conversation_id)
      if record and record.ch and Core.channel_capacity(cfg, record.ch) then
        redis.call('ZADD', K.channel_owned, '0', agent_id .. '|' .. record.ch .. '|' .. conversation_id)
      end
    end
  end

  -- The ids of the conversations the agent holds inactive.
  function Load.inactive_of(agent_id)
    local min, max = Core.agent_range(agent_id)
    local ids = {}
    for i, member in ipairs(redis.call('ZRANGE', K.inactive, min, max, 'BYLEX')) do
      ids[i] = Core.after_bar(member)
    end
    return ids
  end
end
