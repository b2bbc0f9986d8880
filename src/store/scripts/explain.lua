-- explain.lua: why conversations wait, for `switchboard inspect`. Registers `explain`, a
-- read-only function (no writes: it runs on a replica too) with apply's KEYS and shared ARGV,
-- then: what ('waiting' or 'conversation'), and a limit (how many waiting to list) or a
-- conversation id. Returns JSON. It reads agents one by one: for an operator, not the hot
-- path.

local EXPLAIN_FUNCTION_NAME = 'switchboard_explain'

do
  -- The precedence level that serves a pool now: the first with an agent online, or with
  -- `when_full` the first with an agent that may take one more (nil: no levels serve).
  local function serving_level(pool)
    if not USES.levels then return nil end
    local online = redis.call('ZRANGE', pool.online, 0, -1, 'WITHSCORES')
    local when_full = SETTINGS.priority_overflow == 'when_full'
    for i = 1, #online, 2 do
      local level = tonumber(online[i + 1])
      if level >= Core.OUTSIDE then return nil end
      if not when_full then return level end
      local min, max = Core.level_range(level)
      if redis.call('ZCOUNT', pool.load, min, max) > 0 then return level end
    end
    return nil
  end

  -- For one pool: how many wait, how many agents may take one now, and why the others
  -- cannot (reason -> count).
  local function queue_report(pool, req)
    local serving = serving_level(pool)
    local excluded, eligible = {}, 0
    for _, agent_id in ipairs(Agents.ids()) do
      local cfg = Agents.config(agent_id)
      local status = Agents.status(agent_id)
      local today = cfg.daily_limit and redis.call('HGET', K.daily, agent_id)
      local channel_load = req and Core.channel_capacity(cfg, req.ch)
        and Load.of_channel(agent_id, req.ch)
      local reason = Core.exclusion(cfg, status, Agents.status_receives(agent_id),
        Agents.load(agent_id), today, req, serving, channel_load or 0)
      if reason then
        excluded[reason] = (excluded[reason] or 0) + 1
      else
        eligible = eligible + 1
      end
    end
    return {
      queue = pool.id, requirement = req or cjson.null,
      waiting = redis.call('ZCARD', pool.waiting), eligible = eligible, excluded = excluded,
      serving_level = serving or cjson.null,
    }
  end

  -- The pool a waiting record waits in, and its requirement.
  local function queue_of(record)
    local pool = Pools.by_id(record.pw)
    if pool.id == 'base' then return pool, nil end
    local raw = redis.call('HGET', K.pools, pool.id)
    return pool, raw and cjson.decode(raw) or nil
  end

  local function waiting_list(limit)
    local listed, queues = {}, {}
    for _, member in ipairs(redis.call('ZRANGE', K.waiting, 0, limit - 1)) do
      local conversation_id = Core.after_bar(member)
      local record = Records.get(conversation_id)
      if record and record.s == 'waiting' then
        local pool, req = queue_of(record)
        if not queues[pool.id] then queues[pool.id] = queue_report(pool, req) end
        local rank = redis.call('ZRANK', pool.waiting, record.w)
        listed[#listed + 1] = {
          conversation_id = conversation_id, queue = pool.id,
          position = rank and rank + 1 or cjson.null,
          priority = tonumber(record.p) or 0,
          waited_seconds = record.ws and math.floor((NOW - record.ws) / 1000) or cjson.null,
        }
      end
    end
    local reports = {}
    for _, report in pairs(queues) do reports[#reports + 1] = report end
    return {
      waiting = redis.call('ZCARD', K.waiting), listed = listed, queues = reports,
    }
  end

  local function one(conversation_id)
    local record = Records.get(conversation_id)
    if not record then return { conversation_id = conversation_id, known = false } end
    local step, rule = Routing.current_step(record)
    local explained = {
      conversation_id = conversation_id, known = true, state = record.s,
      agent = record.a or cjson.null, priority = tonumber(record.p) or 0,
      rule = record.ri or cjson.null, step = record.ri and (record.si or 1) or cjson.null,
      step_requirement = step or cjson.null, sequence = tonumber(record.q) or 0,
    }
    if record.s == 'waiting' then
      local pool, req = queue_of(record)
      local rank = redis.call('ZRANK', pool.waiting, record.w)
      explained.position = rank and rank + 1 or cjson.null
      explained.waited_seconds = record.ws and math.floor((NOW - record.ws) / 1000) or cjson.null
      explained.queue = queue_report(pool, req)
      explained.candidates = redis.call('ZRANGE', pool.load, 0, 9)
    elseif record.s == 'open' then
      explained.decision = 'assigned to ' .. tostring(record.a)
      -- Gone quiet (inactive_after_seconds): assigned, not counting in the agent's load.
      explained.inactive = record.ia ~= nil
    elseif record.s == 'closed' and record.wu then
      explained.decision = 'closed; its agent is in wrap-up'
    else
      explained.decision = record.s
    end
    return explained
  end

  local function explain(keys, args)
    if not tonumber then bind_standard_library() end
    Call.bind(keys, args)
    Call.begin_call(redis.call('GET', K.settings))
    local what, arg = args[SHARED_ARG_COUNT + 1], args[SHARED_ARG_COUNT + 2]
    if what == 'conversation' then return cjson.encode(one(arg)) end
    return cjson.encode(waiting_list(tonumber(arg) or 20))
  end

  redis.register_function { function_name = EXPLAIN_FUNCTION_NAME, callback = explain,
    flags = { 'no-writes' } }
end
