-- routing.lua: rules, and the pool a conversation is routed by. Module `Routing`; uses KEYS
-- settings (SETTINGS) and meta.
--
-- The first rule whose `when` matches the conversation applies (Core.matching_rule); its steps
-- are tried in order, each waiting up to `wait_seconds` for an agent of its pool before the
-- next, wider step takes over. A conversation record keeps ri (its rule) and si (its current
-- step).

do
  -- The index of the first rule matching the conversation, or nil.
  function Routing.matching_rule(record)
    return Core.matching_rule(record, SETTINGS.rules)
  end

  -- The conversation's current rule step, if any, and its rule. Most conversations of most
  -- projects matched no rule: they have neither, and the rules are not read.
  function Routing.current_step(record)
    if not record.ri then return nil, nil end
    return Core.current_step(record, SETTINGS.rules)
  end

  -- Whether the conversation's channel decides its pool: some agents only serve some channels,
  -- or have a capacity per channel.
  function Routing.by_channel()
    return USES.channel_pools
  end

  -- The pool the conversation is routed by now: the base pool for most conversations of most
  -- projects (no rule, no channel pools), answered without building a requirement.
  function Routing.pool_of(record)
    if not (record.ri or USES.channel_pools) then return Pools.base() end
    local step = Routing.current_step(record)
    return Pools.of_requirement(Core.requirement(step, record, Routing.by_channel()))
  end
end
