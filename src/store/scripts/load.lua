-- load.lua: what an agent holds, and what of it counts in its load. Module `Load`; uses KEYS
-- owned, inactive, channel_owned, meta (owned_by_agent), the agents' "owned:<agent>" keys,
-- and ARGV now and store_layout.
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
--
-- In store layout 2 each agent's members live in a sorted set of its own, "owned:<agent>",
-- whose members are the conversation ids: its load is its ZCARD, and a set of a few dozen
-- members is a listpack of a few bytes each, where a member of `owned` costs about 104. A
-- project's `owned` is split once, on the first call of a worker writing layout 2
-- (`move_to_agent_keys`), and `meta`'s owned_by_agent says so to every worker of this
-- release, whatever layout it writes: loads are never counted in two places at once.

do
  local function agent_key(agent_id)
    return PREFIX .. AGENT_LOAD_KEY_PREFIX .. agent_id
  end

  -- The key that counts the agent's load, and the conversation's member in it.
  local function owned_member(agent_id, conversation_id)
    if USES.agent_load_keys then return agent_key(agent_id), conversation_id end
    return K.owned, Core.pair(agent_id, conversation_id)
  end

  -- At most this many members per ZADD when `owned` is split (Lua's stack bounds unpack).
  local MOVED_PER_COMMAND = 1000

  -- Splits the project's `owned` into one key per agent, once, when this worker writes store
  -- layout 2. An earlier release reads `owned` only: layout 2 is for after the last of its
  -- workers is gone. Returns true when it did (the pools are then to be scored again).
  function Load.move_to_agent_keys()
    if LAYOUT ~= '2' or USES.agent_load_keys then return false end
    local by_agent = {}
    for _, member in ipairs(redis.call('ZRANGE', K.owned, 0, -1)) do
      local agent_id, conversation_id = Core.split_pair(member)
      local args = by_agent[agent_id] or {}
      by_agent[agent_id] = args
      args[#args + 1] = '0'
      args[#args + 1] = conversation_id
    end
    for agent_id, args in pairs(by_agent) do
      for first = 1, #args, 2 * MOVED_PER_COMMAND do
        redis.call('ZADD', agent_key(agent_id),
          unpack(args, first, math.min(#args, first + 2 * MOVED_PER_COMMAND - 1)))
      end
    end
    redis.call('DEL', K.owned)
    Meta.set(OWNED_BY_AGENT_FIELD, '1')
    return true
  end

  -- How many conversations count in the agent's load: its members, so it cannot drift.
  function Load.of_agent(agent_id)
    if USES.agent_load_keys then return redis.call('ZCARD', agent_key(agent_id)) end
    return redis.call('ZLEXCOUNT', K.owned, Core.agent_range(agent_id))
  end

  -- The conversations of the agent's "agent|conversation" members of `key`.
  local function agent_members(key, agent_id)
    local min, max = Core.agent_range(agent_id)
    local ids = {}
    for i, member in ipairs(redis.call('ZRANGE', key, min, max, 'BYLEX')) do
      ids[i] = Core.after_bar(member)
    end
    return ids
  end

  -- The conversations that count in the agent's load.
  local function counted_by(agent_id)
    if USES.agent_load_keys then return redis.call('ZRANGE', agent_key(agent_id), 0, -1) end
    return agent_members(K.owned, agent_id)
  end

  -- Calls `act(conversation_id)` for every conversation that counts in some agent's load.
  function Load.each_counted(act)
    if not USES.agent_load_keys then
      for _, member in ipairs(redis.call('ZRANGE', K.owned, 0, -1)) do
        act(Core.after_bar(member))
      end
      return
    end
    for _, agent_id in ipairs(Agents.ids()) do
      for _, conversation_id in ipairs(counted_by(agent_id)) do act(conversation_id) end
    end
  end

  -- The "agent|channel|conversation" member, when the agent has a capacity for the channel
  -- (none has in most projects).
  local function channel_member(agent_id, conversation_id, record)
    if not USES.channel_capacities then return nil end
    if not Core.channel_capacity(Agents.config(agent_id) or NONE, record.ch) then return nil end
    return agent_id .. '|' .. record.ch .. '|' .. conversation_id
  end

  local function count(agent_id, conversation_id, record)
    local key, counted = owned_member(agent_id, conversation_id)
    redis.call('ZADD', key, '0', counted)
    local member = channel_member(agent_id, conversation_id, record)
    if member then redis.call('ZADD', K.channel_owned, '0', member) end
  end

  local function uncount(agent_id, conversation_id, record)
    local key, counted = owned_member(agent_id, conversation_id)
    redis.call('ZREM', key, counted)
    local member = channel_member(agent_id, conversation_id, record)
    if member then redis.call('ZREM', K.channel_owned, member) end
  end

  -- The agent now holds the conversation, and it counts.
  function Load.hold(agent_id, conversation_id, record)
    count(agent_id, conversation_id, record)
    -- (Cleared only when set: see records.lua.)
    if record.ia then record.ia = nil end
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
    local ids
    if USES.agent_load_keys then
      ids = counted_by(agent_id)
      redis.call('DEL', agent_key(agent_id))
    else
      ids = Call.take_agent_members(K.owned, agent_id)
    end
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
    for _, conversation_id in ipairs(counted_by(agent_id)) do
      local record = Records.get(conversation_id)
      if record and record.ch and Core.channel_capacity(cfg, record.ch) then
        redis.call('ZADD', K.channel_owned, '0', agent_id .. '|' .. record.ch .. '|' .. conversation_id)
      end
    end
  end

  -- The ids of the conversations the agent holds inactive.
  function Load.inactive_of(agent_id)
    return agent_members(K.inactive, agent_id)
  end
end
