-- routing.lua: rules, and the requirement (pool) a conversation is routed by.
-- Part of the function library; uses KEYS settings (through `setting`) and meta.
--
-- The first rule whose `when` matches the conversation applies; its steps are tried in order,
-- each waiting up to `wait_seconds` for an agent of its pool before the next, wider step takes
-- over. A conversation record keeps ri (its rule) and si (its current step).

local RECORD_FIELDS = { channel = 'ch', channel_account = 'ca', language = 'lang', category = 'cat' }

local function field_value(record, name)
  local short = RECORD_FIELDS[name]
  if short then return record[short] end
  local attribute = string.match(name, '^attributes%.(.+)$') or name
  return (record.attrs or {})[attribute]
end

local function condition_holds(actual, expected)
  if actual == nil then return false end
  if type(expected) == 'table' then
    for _, value in ipairs(expected) do
      if value == actual then return true end
    end
    return false
  end
  return expected == actual
end

-- The index of the first rule matching the conversation, or nil.
local function matching_rule(record)
  for i, rule in ipairs(setting('rules') or {}) do
    local holds = true
    for name, expected in pairs(rule.when or {}) do
      if not condition_holds(field_value(record, name), expected) then
        holds = false
        break
      end
    end
    if holds then return i end
  end
  return nil
end

-- The conversation's current rule step, if any.
local function current_step(record)
  local rule = record.ri and (setting('rules') or {})[record.ri]
  return rule and rule.route_to and rule.route_to[record.si or 1], rule
end

-- The pool the conversation is routed by now.
local function pool_of(record)
  local step = current_step(record)
  local restricted = meta_number('restricted_agents') > 0
  -- Most conversations of most projects: no rule step, no agent limited to some channels.
  if not step and not restricted then return BASE end
  local req = {}
  if step then
    req.s = step.skills
    req.sc = step.channels
  end
  if restricted then
    req.ch = record.ch
    req.ca = record.ca
  end
  return pool_for(req)
end
