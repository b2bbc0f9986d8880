-- pools.lua: pools of eligible agents, and choosing one by strategy and precedence level.
-- Module `Pools`; uses KEYS by_load, by_order, by_pass, online, waiting, base_waiting, pools,
-- memberships, passes, meta (rr:<pool>, vtime, tiers:<family>) and no ARGV of its own.
--
-- A pool holds the agents that may serve one requirement (the skills and channels of a rule
-- step, the conversation's channel when some agents only serve some channels); the base pool
-- has no requirement. Each pool is sorted sets: eligible agents by load, by round-robin
-- position and by weighted pass (eligible = may take one more conversation now), and agents
-- online whatever their load (for precedence levels), plus the pool's waiting conversations.
-- Scores start with the agent's level bucket, so one level is one score range. Every change
-- that alters an agent's eligibility calls `Pools.refresh`, which updates the base pool and the
-- pools the agent belongs to: choosing is then a ZRANGE, O(log n) however large the team.
--
-- Eligible is per pool where a pool names a channel (`ch`) the agent has a `capacity` for:
-- full for chats, it may still take an email. With `tie_break: longest_idle`, least_loaded
-- chooses in per-level sets of their own, "<pool>:idle:<level>", scored by load then by the
-- number of the agent's last assignment (Core.idle_score). A rule step with `order_by:
-- skill_level` routes to a family: the pool "<digest>.levels" of everyone who qualifies (its
-- queue, its levels), and one tier pool "<digest>.levels.t<sum>" per sum of the step's skill
-- levels that some agent has (listed in meta tiers:<family>, highest first): choosing tries
-- the tiers in that order, each a ZRANGE, so the cost grows with the number of distinct sums
-- (at most ten per skill of the step), not with the team.

do
  -- The base pool: its keys are declared ones. `pass` is the prefix of the per-level pass sets;
  -- the set for agents outside the levels (all agents, in a project without levels) is the
  -- declared key K.by_pass.
  local BASE
  -- Pools changed by this event, whose waiting conversations may now find an agent.
  local touched
  -- Pools found with no eligible agent in this call (pool id -> true), until an agent becomes
  -- eligible in them: while a project is at capacity, each new conversation of a batch would
  -- otherwise ask Redis again.
  local nobody_eligible
  local base_bound_for
  Call.on_call(function()
    nobody_eligible = {}
    -- Like K, rebuilt only when the project changes.
    if base_bound_for ~= PREFIX then
      BASE = {
        id = 'base', load = K.by_load, order = K.by_order, pass = PREFIX .. 'pool:pass',
        online = K.online, waiting = K.base_waiting, idle = PREFIX .. 'pool:idle',
        pass_sets = {}, idle_sets = {},
      }
      base_bound_for = PREFIX
    end
    BASE.waiting = USES.requirement_pools and K.base_waiting or K.waiting
  end)
  -- (NONE until the event touches a pool: a creation, which only takes, touches none.)
  Call.on_event(function() touched = NONE end)
  local function touch(pool)
    touched = with_entry(touched, pool.id, pool)
  end
  -- Requirements (pool id -> table, false: none) and families' tiers read in this call.
  local requirements, family_tiers
  -- (NONE until the first: a project without requirement pools reads none; see NONE.)
  Call.on_call(function()
    requirements, family_tiers = NONE, NONE
  end)

  local FAMILY_SUFFIX = '.levels'
  local function is_family(id)
    return string.sub(id, -#FAMILY_SUFFIX) == FAMILY_SUFFIX
  end

  -- How many times a pick skips an agent it must not choose before giving up.
  local MAX_SKIPPED = 1000

  function Pools.base()
    return BASE
  end

  -- The requirement pools named in this call (id -> pool): placing an agent again after an
  -- assignment names each of its pools, and a pool's keys are seven strings to build.
  local requirement_pools
  Call.on_call(function() requirement_pools = NONE end)

  local function requirement_pool(id)
    local pool = requirement_pools[id]
    if pool then return pool end
    local key = PREFIX .. 'rq:' .. id .. ':'
    pool = {
      id = id, load = key .. 'load', order = key .. 'order', pass = key .. 'pass',
      online = key .. 'online', waiting = key .. 'waiting', idle = key .. 'idle',
      family = is_family(id), pass_sets = {}, idle_sets = {},
    }
    requirement_pools = with_entry(requirement_pools, id, pool)
    return pool
  end

  -- The requirement of a pool (nil for the base pool).
  function Pools.requirement(id)
    if id == nil or id == 'base' then return nil end
    local req = requirements[id]
    if req == nil then
      local raw = redis.call('HGET', K.pools, id)
      req = raw and Call.decoded(raw) or false
      requirements = with_entry(requirements, id, req)
    end
    return req or nil
  end

  -- A family's tiers: its sums of levels, highest first.
  local function tiers_of(family_id)
    local tiers = family_tiers[family_id]
    if not tiers then
      local raw = redis.call('HGET', K.meta, 'tiers:' .. family_id)
      tiers = raw and Call.decoded(raw) or NONE
      family_tiers = with_entry(family_tiers, family_id, tiers)
    end
    return tiers
  end

  local function tier_id(family_id, sum)
    return family_id .. '.t' .. string.format('%d', sum)
  end

  -- A pool by the id a record keeps (`pw`; nil or 'base' for the base pool).
  function Pools.by_id(id)
    if id == nil or id == 'base' then return BASE end
    return requirement_pool(id)
  end

  -- The pools this event changed (id -> pool).
  function Pools.touched()
    return touched
  end

  -- The ids of the requirement pools the agent belongs to (a list that is only read).
  function Pools.memberships(agent_id)
    if not USES.requirement_pools then return NONE end
    local raw = redis.call('HGET', K.memberships, agent_id)
    return raw and Call.decoded(raw) or NONE
  end

  local function set_memberships(agent_id, ids)
    if #ids == 0 then
      redis.call('HDEL', K.memberships, agent_id)
    else
      redis.call('HSET', K.memberships, agent_id, cjson.encode(ids))
    end
  end

  -- One precedence bucket's set among a pool's per-level sets, "<prefix>:<level>", named once
  -- in `sets` (the pool's own table of them): a level is a number, which Lua writes into a
  -- string with a printf.
  local function level_set(sets, prefix, level)
    local key = sets[level]
    if not key then
      key = prefix .. ':' .. level
      sets[level] = key
    end
    return key
  end

  -- The weighted-pass set of one precedence bucket of a pool.
  local function pass_key(pool, level)
    if pool == BASE and level == Core.OUTSIDE then return K.by_pass end
    return level_set(pool.pass_sets, pool.pass, level)
  end

  -- The longest-idle set of one precedence bucket of a pool.
  local function idle_key(pool, level)
    return level_set(pool.idle_sets, pool.idle, level)
  end

  local function longest_idle()
    return SETTINGS.tie_break == 'longest_idle'
  end

  -- Whether a strategy in use orders by weighted pass (each such assignment moves a pass).
  local function weighted_in_use()
    return SETTINGS.new_visitors == 'weighted' or SETTINGS.returning_visitors == 'weighted'
  end

  -- Takes the agent out of the pool (`cfg` says which bucket its pass is in).
  local function leave(pool, agent_id, cfg)
    redis.call('ZREM', pool.load, agent_id)
    redis.call('ZREM', pool.order, agent_id)
    redis.call('ZREM', pool.online, agent_id)
    if cfg then
      redis.call('ZREM', pass_key(pool, Core.bucket(cfg)), agent_id)
      redis.call('ZREM', idle_key(pool, Core.bucket(cfg)), agent_id)
    end
  end

  -- The weighted pass of the agent being placed, once read (nil: not yet): read when it first
  -- joins a pool, then shared by the other pools of the same placement.
  local placing_pass

  -- The agent's weighted pass as it joins a pool: where it left off, or the current virtual
  -- time if that is later (stored, so every pool and the next assignment see the same pass).
  local function joining_pass(agent_id)
    if placing_pass == nil then
      local rejoined
      placing_pass, rejoined = Core.joining_pass(redis.call('HGET', K.passes, agent_id),
        Meta.number('vtime'))
      if rejoined then redis.call('HSET', K.passes, agent_id, placing_pass) end
    end
    return placing_pass
  end

  -- The agent being placed: the whole part of its load score and its idle score, as text, made
  -- for its first pool and the same in the others (nil: not yet).
  local placing_whole, placing_idle

  -- An agent's least_loaded score: in whole numbers once the project keeps loads per agent
  -- (every pool is scored again then: `Pools.refresh_all`), else with a random fraction.
  local function load_score(cfg, load)
    if USES.agent_load_keys then
      return Core.whole_load_score(cfg, load, Call.random(0, Core.LOAD_TIES - 1))
    end
    if not placing_whole then placing_whole = Core.load_whole(cfg, load) end
    return Core.load_score(placing_whole, Call.random(0, Core.LOAD_FRACTION_TIES - 1))
  end

  -- The sets of a pool that every assignment writes again: its loads, and its passes or its
  -- idle order where they are in use. Kept unpacked (see Call.keep_unpacked) from the time an
  -- agent joins the pool, which is when such a set is made (and, after Redis loaded its data
  -- from disk, packed again).
  local function keep_assigned_sets_unpacked(pool, level, idle)
    Call.keep_unpacked(pool.load, 'zset')
    if weighted_in_use() then Call.keep_unpacked(pass_key(pool, level), 'zset') end
    if idle then Call.keep_unpacked(idle_key(pool, level), 'zset') end
  end

  -- The agent's precedence level, and its score in a pool's `online` set.
  local function level_of(cfg)
    local level = Core.bucket(cfg)
    return level, level == Core.OUTSIDE and Core.OUTSIDE_TEXT or level
  end

  -- Where one agent stands in one pool now, as `agent_state` tells it. `took` (see
  -- `Pools.refresh`): the agent only took a conversation since it was last placed, so an agent
  -- that was eligible here and still is keeps its level, round-robin position and (unless
  -- `took` is 'pass') its pass: only its load score moves.
  local function place(pool, agent_id, cfg, online, eligible, load, idle, took)
    -- The pool's waiting conversations may find room now, unless the agent only took one:
    -- taking makes no room, so those that found nobody before still find nobody (drain, which
    -- looks at the pools an event touched, then has nothing to read).
    if not took then touch(pool) end
    if eligible then nobody_eligible[pool.id] = nil end
    if not online then
      leave(pool, agent_id, cfg)
      return
    end
    if eligible then
      -- ZADD answers 1 when the agent was not in the pool's load set: it joins the pool.
      local joined = redis.call('ZADD', pool.load, load_score(cfg, load), agent_id) == 1
      -- An agent that only took a conversation and stays eligible was placed: a creation stops
      -- here, unless an idle order moves too.
      if took == true and not joined and not idle then return end
      local level, level_score = level_of(cfg)
      if joined or not took then
        -- (Joining while taking: it was not placed as eligible before, whatever made it so.)
        if joined then touch(pool) end
        redis.call('ZADD', pool.online, level_score, agent_id)
        redis.call('ZADD', pool.order, Core.order_score(cfg), agent_id)
        redis.call('ZADD', pass_key(pool, level), joining_pass(agent_id), agent_id)
      elseif took == 'pass' then
        redis.call('ZADD', pass_key(pool, level), redis.call('HGET', K.passes, agent_id),
          agent_id)
      end
      if idle then
        if not placing_idle then
          placing_idle = string.format('%d', Core.idle_score(load, idle))
        end
        redis.call('ZADD', idle_key(pool, level), placing_idle, agent_id)
      end
      if joined then keep_assigned_sets_unpacked(pool, level, idle) end
    else
      local level, level_score = level_of(cfg)
      redis.call('ZADD', pool.online, level_score, agent_id)
      redis.call('ZREM', pool.load, agent_id)
      redis.call('ZREM', pool.order, agent_id)
      redis.call('ZREM', pass_key(pool, level), agent_id)
      if idle then redis.call('ZREM', idle_key(pool, level), agent_id) end
    end
  end

  -- The agent's eligibility now, as four values (no table, since this runs for nearly every
  -- event): online (may receive at all), eligible (may take one more), its load and, with
  -- longest_idle, the number of its last assignment (0: never). `chosen`: a strategy has just
  -- chosen it from a pool, where only agents placed online are, and taking a conversation
  -- changes neither its status nor its configuration: it is online without asking its status.
  local function agent_state(agent_id, cfg, chosen)
    if not cfg then return false, false end
    local online = chosen or Core.receives(cfg, Agents.status_receives(agent_id))
    local load = Load.of_agent(agent_id)
    local idle = longest_idle() and Agents.last_assignment(agent_id) or nil
    local eligible = online and Core.has_room(cfg, load)
      and not Agents.daily_limit_reached(agent_id, cfg)
    return online, eligible, load, idle
  end

  -- Whether the agent being placed has room in each channel asked about so far (channel ->
  -- boolean; NONE until one is): its pools share channels, and its load per channel stays as
  -- it is while it is placed.
  local placing_rooms

  -- Starts placing one agent: what its pools share (its pass, its room per channel, its
  -- scores' text) is read or made again when first needed.
  local function begin_placing()
    placing_pass, placing_rooms, placing_whole, placing_idle = nil, NONE, nil, nil
  end

  -- Whether an eligible agent is eligible in a requirement pool: it has room in the pool's
  -- channel, when it has a capacity for it.
  local function room_in(id, agent_id, cfg)
    local req = Pools.requirement(id)
    if not (req and req.ch) then return true end
    local room = placing_rooms[req.ch]
    if room == nil then
      room = Load.channel_room(agent_id, cfg, req.ch)
      placing_rooms = with_entry(placing_rooms, req.ch, room)
    end
    return room
  end

  -- Places the agent in one requirement pool, given its `agent_state`.
  local function place_in(id, agent_id, cfg, online, eligible, load, idle, took)
    if eligible and Core.has_channel_capacity(cfg) and not room_in(id, agent_id, cfg) then
      eligible = false
    end
    place(requirement_pool(id), agent_id, cfg, online, eligible, load, idle, took)
  end

  -- Puts the agent into the pools or takes it out, according to its current eligibility.
  -- Returns whether it is eligible now in the base pool (what `available` would then read).
  -- `took`, after an assignment: the agent only took a conversation since it was last placed
  -- (its configuration and status are as they were), so where it stays eligible only its load
  -- score, and with 'pass' its weighted pass, change: a creation then writes one sorted set
  -- per pool instead of four. `chosen`: a strategy has just chosen it (see `agent_state`).
  function Pools.refresh(agent_id, took, chosen)
    local cfg = Agents.config(agent_id)
    local online, eligible, load, idle = agent_state(agent_id, cfg, chosen)
    begin_placing()
    place(BASE, agent_id, cfg, online, eligible, load, idle, took)
    if USES.requirement_pools then
      for _, id in ipairs(Pools.memberships(agent_id)) do
        place_in(id, agent_id, cfg, online, eligible, load, idle, took)
      end
    end
    return eligible == true
  end

  -- Places the agent again after an assignment by `strategy` (nil: none chose it). Only a
  -- weighted assignment moves a pass, and only weighted strategies move the virtual time that
  -- may leave an eligible agent's pass behind (to be caught up on its next placement): where
  -- none is in use, the agent's pass stays as placed.
  function Pools.refresh_assigned(agent_id, strategy)
    local took = true
    if strategy == 'weighted' then
      took = 'pass'
    elseif weighted_in_use() then
      took = nil
    end
    return Pools.refresh(agent_id, took, strategy ~= nil)
  end

  function Pools.refresh_all()
    for _, agent_id in ipairs(Agents.ids()) do Pools.refresh(agent_id) end
  end

  -- Takes the agent out of every pool, as configured by `cfg` (before a change of its level, or
  -- its removal).
  function Pools.leave_all(agent_id, cfg)
    leave(BASE, agent_id, cfg)
    for _, id in ipairs(Pools.memberships(agent_id)) do
      leave(requirement_pool(id), agent_id, cfg)
    end
  end

  -- Registers a pool (id -> requirement) and fills it with the qualifying agents (one pass
  -- over the team, once per distinct requirement). Returns false when it existed already.
  local function register(id, req)
    -- Read or registered in this call: it exists (pools are never removed).
    if requirements[id] then return false end
    if redis.call('HSETNX', K.pools, id, cjson.encode(req)) == 0 then return false end
    requirements = with_entry(requirements, id, req)
    Meta.add('pool_count', 1)
    if BASE.waiting == K.waiting then
      -- The first requirement pool: the base pool gets a queue of its own, which holds every
      -- conversation waiting so far (they were all the base pool's).
      redis.call('ZUNIONSTORE', K.base_waiting, '1', K.waiting)
      Queues.joined(K.base_waiting)
      BASE.waiting = K.base_waiting
    end
    for _, agent_id in ipairs(Agents.ids()) do
      local cfg = Agents.config(agent_id)
      if Core.qualifies(cfg, req) then
        local ids = { unpack(Pools.memberships(agent_id)) }
        ids[#ids + 1] = id
        set_memberships(agent_id, ids)
        begin_placing()
        place_in(id, agent_id, cfg, agent_state(agent_id, cfg))
      end
    end
    return true
  end

  -- The tier of a family for one sum of levels, registered the first time an agent has it.
  local function ensure_tier(family_id, family_req, sum)
    local id = tier_id(family_id, sum)
    local req = {}
    for field, value in pairs(family_req) do req[field] = value end
    req.t = sum
    if not register(id, req) then return end
    local tiers, added = Core.with_tier(tiers_of(family_id), sum)
    if added then
      family_tiers = with_entry(family_tiers, family_id, tiers)
      redis.call('HSET', K.meta, 'tiers:' .. family_id, cjson.encode(tiers))
    end
  end

  -- Recomputes which requirement pools the agent belongs to (its skills or channels changed, or
  -- it was removed) and leaves the ones it no longer qualifies for. A family whose tiers lack
  -- the agent's sum of levels gets that tier.
  function Pools.rejoin(agent_id, previous)
    local cfg = Agents.config(agent_id)
    local old = {}
    for _, id in ipairs(Pools.memberships(agent_id)) do old[id] = true end
    local ids, families = {}, {}
    if cfg then
      local pools = redis.call('HGETALL', K.pools)
      local known = {}
      for i = 1, #pools, 2 do known[pools[i]] = true end
      for i = 1, #pools, 2 do
        local id, req = pools[i], Call.decoded(pools[i + 1])
        requirements = with_entry(requirements, id, req)
        if Core.qualifies(cfg, req) then
          ids[#ids + 1] = id
          old[id] = nil
          if is_family(id) then
            local sum = Core.skill_sum(cfg, req.s)
            if not known[tier_id(id, sum)] then families[id] = { req = req, sum = sum } end
          end
        end
      end
    end
    for id in pairs(old) do leave(requirement_pool(id), agent_id, previous or cfg) end
    set_memberships(agent_id, ids)
    for id, family in pairs(families) do ensure_tier(id, family.req, family.sum) end
  end

  -- The pool of a requirement (nil: the base pool), registered and filled the first time it is
  -- needed. A family (a step ordered by skill level) registers its tiers with it.
  function Pools.of_requirement(req)
    local text = req and Core.requirement_text(req)
    if not text then return BASE end
    local id = string.sub(redis.sha1hex(text), 1, 16)
    if req.o == 'skill_level' then id = id .. FAMILY_SUFFIX end
    if register(id, req) and req.o == 'skill_level' then
      for _, agent_id in ipairs(Agents.ids()) do
        local cfg = Agents.config(agent_id)
        if Core.qualifies(cfg, req) then ensure_tier(id, req, Core.skill_sum(cfg, req.s)) end
      end
    end
    return requirement_pool(id)
  end

  -- Is the agent eligible right now (in the base pool)?
  function Pools.available(agent_id)
    return redis.call('ZSCORE', K.by_load, agent_id) ~= false
  end

  -- Is the agent eligible right now for this conversation's channel too?
  function Pools.available_for(agent_id, record)
    if not Pools.available(agent_id) then return false end
    return Load.channel_room(agent_id, Agents.config(agent_id) or NONE, record.ch)
  end

  -- Every eligible agent of the base pool but the excluded ones (a set), with room for the
  -- conversation's channel.
  function Pools.eligible_agents(excluded, record)
    local agents = {}
    local by_channel = record.ch and USES.channel_capacities
    for _, agent_id in ipairs(redis.call('ZRANGE', K.by_load, 0, -1)) do
      if not excluded[agent_id] and not (by_channel
          and not Load.channel_room(agent_id, Agents.config(agent_id) or NONE, record.ch)) then
        agents[#agents + 1] = agent_id
      end
    end
    return agents
  end

  -- Whether any agent of the base pool is eligible.
  function Pools.anyone_eligible()
    return redis.call('ZCARD', K.by_load) > 0
  end

  -- The first member of `key` scored within [min, max] that `excluded` does not hold. Over
  -- every score (most choices: no precedence levels), members are taken by rank: the same
  -- members in the same order, without a score range for Redis to parse and to test each
  -- member's score against (in layout 1 a fraction, kept as text that is parsed again for
  -- every member passed: about 4% of a creation).
  local function first_allowed(key, min, max, excluded)
    local every_score = min == '-inf' and max == '+inf'
    for offset = 0, MAX_SKIPPED do
      local at = offset == 0 and '0' or offset -- as text when it can (see NOW_TEXT)
      local found
      if every_score then
        found = redis.call('ZRANGE', key, at, at)[1]
      else
        found = redis.call('ZRANGE', key, min, max, 'BYSCORE', 'LIMIT', at, '1')[1]
      end
      if not found then return nil end
      if not excluded[found] then return found end
    end
  end

  -- The first agent the strategy chooses among the pool's eligible agents of one precedence
  -- `level` (all of them when nil: a project without levels has everyone outside them),
  -- skipping the agents in `excluded` (a set; a conversation's few agents it must not go back
  -- to).
  local function pick_in(pool, strategy, excluded, level)
    local min, max = Core.level_range(level)
    if strategy == 'round_robin' then
      -- Kept as Redis wrote it: Lua's own number formatting keeps only 14 digits.
      local last_text = redis.call('HGET', K.meta, 'rr:' .. pool.id)
      local last = tonumber(last_text)
      local found
      if last and Core.in_level(last, level) then
        found = first_allowed(pool.order, '(' .. last_text, max, excluded)
      end
      return found or first_allowed(pool.order, min, max, excluded)
    elseif strategy == 'weighted' then
      return first_allowed(pass_key(pool, level or Core.OUTSIDE), '-inf', '+inf', excluded)
    elseif longest_idle() then
      return first_allowed(idle_key(pool, level or Core.OUTSIDE), '-inf', '+inf', excluded)
    end
    return first_allowed(pool.load, min, max, excluded)
  end

  -- As `pick_in`; in a family, the best tier that has someone to choose decides.
  local function pick(pool, strategy, excluded, level)
    if not pool.family then return pick_in(pool, strategy, excluded, level) end
    for _, sum in ipairs(tiers_of(pool.id)) do
      local agent_id = pick_in(requirement_pool(tier_id(pool.id, sum)), strategy, excluded, level)
      if agent_id then return agent_id end
    end
    return nil
  end

  -- The agent for a conversation of this pool, by strategy and precedence: only the first
  -- level with an agent online serves (`when_full`: the next level also serves while it is
  -- full). Agents outside the levels serve only when no level agent is online: then the
  -- conversation is offered to all of them, returned as the second value.
  function Pools.choose(pool, strategy, excluded)
    if not USES.levels then
      -- Every strategy picks among the same eligible agents: none for one, none for all.
      if nobody_eligible[pool.id] then return nil end
      local agent_id = pick(pool, strategy, excluded or NONE)
      if not agent_id and not excluded then nobody_eligible[pool.id] = true end
      return agent_id
    end
    excluded = excluded or NONE
    local first = redis.call('ZRANGE', pool.online, '0', '0', 'WITHSCORES')
    if not first[1] then return nil end
    local level = tonumber(first[2])
    while level < Core.OUTSIDE do
      local agent_id = pick(pool, strategy, excluded, level)
      if agent_id or SETTINGS.priority_overflow ~= 'when_full' then return agent_id end
      local next_level = redis.call('ZRANGE', pool.online, '(' .. level, '+inf', 'BYSCORE',
        'LIMIT', 0, 1, 'WITHSCORES')
      if not next_level[1] or tonumber(next_level[2]) >= Core.OUTSIDE then return nil end
      level = tonumber(next_level[2])
    end
    local outsiders = {}
    local outside = Core.level_range(Core.OUTSIDE)
    for _, agent_id in ipairs(redis.call('ZRANGE', pool.load, outside, '+inf', 'BYSCORE')) do
      if not excluded[agent_id] then outsiders[#outsiders + 1] = agent_id end
    end
    if #outsiders == 0 then return nil end
    return nil, outsiders
  end

  -- Advances the strategy's state once `agent_id` was chosen by it (in a family, in its tier).
  function Pools.served(pool, agent_id, strategy)
    if strategy == 'round_robin' then
      local cfg = Agents.config(agent_id)
      local id = pool.id
      if pool.family then id = tier_id(id, Core.skill_sum(cfg, Pools.requirement(id).s)) end
      redis.call('HSET', K.meta, 'rr:' .. id, Core.order_score(cfg))
    elseif strategy == 'weighted' then
      local pass = tonumber(redis.call('HGET', K.passes, agent_id)) or 0
      Meta.set('vtime', pass)
      redis.call('HSET', K.passes, agent_id,
        Core.pass_after_assignment(pass, Agents.config(agent_id)))
    end
  end
end
