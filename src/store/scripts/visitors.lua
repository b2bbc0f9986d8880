-- visitors.lua: which agent last served each visitor, for `returning_visitors`. Module
-- `Visitors`; uses KEYS visitors, served, visitor_seen and ARGV now.
--
-- `visitors` maps a visitor to "<agent>|<minute>", the agent that served them last and when
-- (minutes since the epoch), and the list `served` notes "<visitor>|<minute>" each time a
-- visitor is served, in that order: forgetting reads its head (see Core.expired_head). An
-- earlier release kept the agent alone in `visitors` and the time in the sorted set
-- `visitor_seen` (96 B a visitor, where a list entry costs about 17): such entries are still
-- read, and forgotten through that set, so an upgrade forgets nobody early and keeps nobody
-- late.

do
  -- The default of `visitor_memory_days`, should the settings lack it.
  local DEFAULT_MEMORY_DAYS = 30
  -- At most this many visitors are forgotten per event that forgets (see
  -- Conversations.forget_old), from each of `served` and `visitor_seen`.
  local FORGOTTEN_PER_EVENT = 64
  local MS_PER_MINUTE = 60000

  local function memory_ms()
    return (tonumber(Call.setting('visitor_memory_days')) or DEFAULT_MEMORY_DAYS) * Core.MS_PER_DAY
  end

  -- The agent that last served this visitor, if remembered and still an agent of the project.
  function Visitors.remembered_agent(visitor_id)
    if not visitor_id then return nil end
    local value = redis.call('HGET', K.visitors, visitor_id)
    if not value then return nil end
    local agent_id, minute = Core.split_stamped(value)
    local seen = minute and minute * MS_PER_MINUTE
      or tonumber(redis.call('ZSCORE', K.visitor_seen, visitor_id))
    if not seen or seen < NOW - memory_ms() then return nil end
    if Agents.config(agent_id) then return agent_id end
    return nil
  end

  function Visitors.remember(visitor_id, agent_id)
    if not visitor_id then return end
    local minute = string.format('%d', math.floor(NOW / MS_PER_MINUTE))
    redis.call('HSET', K.visitors, visitor_id, agent_id .. '|' .. minute)
    redis.call('RPUSH', K.served, visitor_id .. '|' .. minute)
  end

  -- Forgets visitors not served for longer than the memory (a bounded number): those at the
  -- head of `served` whose memory in `visitors` has not been renewed since, and those an
  -- earlier release remembered.
  function Visitors.forget_old()
    local cutoff_ms = NOW - memory_ms()
    local ids, _, count = Call.expired_head(K.served, cutoff_ms / MS_PER_MINUTE,
      FORGOTTEN_PER_EVENT)
    if count > 0 then
      local values = redis.call('HMGET', K.visitors, unpack(ids))
      local gone = {}
      for i = 1, count do
        local _, minute = Core.split_stamped(values[i] or '')
        -- Served again since (a later entry speaks for it), or an earlier release's: kept.
        if minute and minute * MS_PER_MINUTE < cutoff_ms then gone[#gone + 1] = ids[i] end
      end
      if #gone > 0 then redis.call('HDEL', K.visitors, unpack(gone)) end
      redis.call('LTRIM', K.served, count, -1)
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
