-- visitors.lua: which agent last served each visitor, for `returning_visitors`. Module
-- `Visitors`; uses KEYS visitors, visitor_seen and ARGV now.

do
  -- The default of `visitor_memory_days`, should the settings lack it.
  local DEFAULT_MEMORY_DAYS = 30
  -- At most this many visitors are forgotten per event that forgets (see
  -- Conversations.forget_old).
  local FORGOTTEN_PER_EVENT = 64

  local function memory_ms()
    return (tonumber(Call.setting('visitor_memory_days')) or DEFAULT_MEMORY_DAYS) * Core.MS_PER_DAY
  end

  -- The agent that last served this visitor, if remembered and still an agent of the project.
  function Visitors.remembered_agent(visitor_id)
    if not visitor_id then return nil end
    local seen = tonumber(redis.call('ZSCORE', K.visitor_seen, visitor_id))
    if not seen or seen < NOW - memory_ms() then return nil end
    local agent_id = redis.call('HGET', K.visitors, visitor_id)
    if agent_id and Agents.config(agent_id) then return agent_id end
    return nil
  end

  function Visitors.remember(visitor_id, agent_id)
    if not visitor_id then return end
    redis.call('HSET', K.visitors, visitor_id, agent_id)
    redis.call('ZADD', K.visitor_seen, NOW_TEXT, visitor_id)
  end

  -- Forgets visitors not served for longer than the memory (a bounded number).
  function Visitors.forget_old()
    local gone = redis.call('ZRANGE', K.visitor_seen, '-inf', NOW - memory_ms(), 'BYSCORE',
      'LIMIT', 0, FORGOTTEN_PER_EVENT)
    for _, visitor_id in ipairs(gone) do
      redis.call('HDEL', K.visitors, visitor_id)
      redis.call('ZREM', K.visitor_seen, visitor_id)
    end
  end
end
