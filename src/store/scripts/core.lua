-- core.lua: the decisions that need no Redis: the order of events, rule matching, which pool a
-- conversation needs and who qualifies for it, eligibility, and the strategies' arithmetic.
-- First module of the function library; it calls no Redis command and reads no KEYS or ARGV,
-- so `cargo test` runs it in a plain Lua 5.1 (store/core_tests.rs). The other modules feed it
-- what they read.

-- Limits and units, by name.
Core.OUTSIDE = 1001 -- the precedence bucket of agents outside the levels (levels are 1..1000)
Core.OUTSIDE_TEXT = '1001'
Core.BUCKET = 1e11 -- a pool score's bucket prefix: bucket * BUCKET + the score within it
Core.ORDER_TIE_RANGE = 4096 -- round-robin positions are order * 4096 + insertion seq mod 4096
Core.LOAD_FRACTION_TIES = 63 -- least_loaded ties are broken by a random fraction, in sixty-fourths
Core.LOAD_TIES = 1024 -- … or, in whole scores, by a random whole number below this
Core.MS_PER_DAY = 86400000

do
  ---------------------------------------------------------------------------------------------
  -- The order of events about one thing (see order.lua for where versions are kept).

  -- What to do with an event (its time in us, nil when it has none, and the digest of its id),
  -- given the version of a thing it would change (the time and digest of the last event
  -- applied to it, nil when none was): 'apply', 'stale' (older than that version) or
  -- 'duplicate' (that very event).
  function Core.judge(stored_time, stored_digest, time, digest)
    if stored_digest == digest then return 'duplicate' end
    if time and stored_time and time < stored_time then return 'stale' end
    return 'apply'
  end

  -- A version as stored, "<time us>:<digest>" (the time empty for an event without one):
  -- its time (a number, or nil) and digest.
  function Core.parse_version(text)
    if not text then return nil, nil end
    local colon = string.find(text, ':', 1, true)
    return tonumber(string.sub(text, 1, colon - 1)), string.sub(text, colon + 1)
  end

  -- The version of a thing once an event is applied to it: the later time stays (an event
  -- without time does not move it), and the digest is the event's.
  function Core.advanced_version(stored_time, time, time_text, digest)
    if not time or (stored_time and stored_time > time) then
      time_text = stored_time and string.format('%d', stored_time) or ''
    end
    return time_text .. ':' .. digest
  end

  -- A version's time as the library keeps it, text (a stored record may hold it as a number;
  -- "" and nil stay as they are).
  function Core.version_text(time)
    if type(time) == 'number' then return string.format('%d', time) end
    return time
  end

  -- The other way: a version's time as a number, to store in 8 bytes ("" and nil as they are).
  function Core.version_number(time)
    if time == nil or time == '' then return time end
    return tonumber(time)
  end

  -- Combines the outcomes of the parts of one event (the fields of a patch, the agents of an
  -- upsert; a set of outcome names): applied (nil) if any part was, else stale if any part
  -- was, else a duplicate.
  function Core.combined_outcome(outcomes)
    if outcomes.apply then return nil end
    if outcomes.stale then return 'stale' end
    if outcomes.duplicate then return 'duplicate' end
    return nil
  end

  ---------------------------------------------------------------------------------------------
  -- What a call made of a stored text, kept for later calls. The library's top level runs
  -- once, so a table it holds outlives the call that filled it: keyed by the stored text
  -- itself (whoever wrote it, a worker of an earlier release included), what was made of a
  -- text stays right for as long as that text is what is stored, and a change is seen at once,
  -- as another text.

  -- A function of a text (or false, or a number) that returns `make(text)`, made once per text
  -- while it is in use: texts asked for since the last `limit` new ones, and before that those
  -- of the `limit` before them, are kept; older ones are forgotten (so at most 2 * `limit`).
  -- What it returns is shared by every call that asks for the same text: only read.
  function Core.kept_by_text(limit, make)
    local recent, older, count = {}, {}, 0
    return function(text)
      local made = recent[text]
      if made ~= nil then return made end
      made = older[text]
      if made == nil then made = make(text) end
      if count >= limit then recent, older, count = {}, recent, 0 end
      recent[text] = made
      count = count + 1
      return made
    end
  end

  -- A whole number as text ("%d"), made once per number while it is in use. Lua prints a
  -- number with "%.14g", and Redis one given to a command with "%.17g": a printf of a double,
  -- about 1.5 thousand instructions each time.
  Core.whole_text = Core.kept_by_text(1024, function(whole)
    return string.format('%d', whole)
  end)

  -- The output the worker publishes as `conversation.assigned`, as JSON, as an event's record
  -- keeps it: {"type", "q" (its sequence), "data"}. Written in one concatenation, not by cjson
  -- from tables (the output of most events; 5 thousand instructions of a creation's 233 saved):
  -- ids are of the contract's alphabet (A-Z a-z 0-9 _ . : @ -), the reason and the strategy
  -- are the library's own words, so no value needs escaping. `strategy` and
  -- `previous_agent_id` may be nil (left out, as cjson leaves out a nil).
  function Core.assigned_output(conversation_id, agent_id, reason, strategy, previous_agent_id,
                                sequence)
    return '{"type":"conversation.assigned","q":' .. Core.whole_text(sequence)
      .. ',"data":{"conversation_id":"' .. conversation_id .. '","agent_id":"' .. agent_id
      .. '","reason":"' .. reason
      .. (strategy and '","strategy":"' .. strategy or '')
      .. (previous_agent_id and '","previous_agent_id":"' .. previous_agent_id or '')
      .. '"}}'
  end

  ---------------------------------------------------------------------------------------------
  -- Forgetting in time order. What must be forgotten some time after it happened (a visitor
  -- served, a conversation closed) is noted in a list as "<id>|<time>", in the order it
  -- happened, and forgotten from the list's head: a list entry costs a fraction of a sorted
  -- set's, and the head is all a sweep reads. ('|' cannot appear in an identifier.)

  -- An entry's id and time (a number; nil when the text holds no time).
  function Core.split_stamped(entry)
    local bar = string.find(entry, '|', 1, true)
    if not bar then return entry, nil end
    return string.sub(entry, 1, bar - 1), tonumber(string.sub(entry, bar + 1))
  end

  -- The ids and times of the entries at the head of `entries` whose time is before `cutoff`,
  -- up to the first that is not (workers' clocks differ a little, so a later entry may be a
  -- little older: it waits for the next sweep). An entry without a time never blocks the list:
  -- it counts as expired. Returns the ids, their times (by position) and how many there are.
  function Core.expired_head(entries, cutoff)
    local ids, times, count = {}, {}, 0
    for i, entry in ipairs(entries) do
      local id, time = Core.split_stamped(entry)
      if time and time >= cutoff then break end
      ids[i], times[i], count = id, time, i
    end
    return ids, times, count
  end

  ---------------------------------------------------------------------------------------------
  -- A big hash spread over small ones by linear hashing (see buckets.lua): with `count`
  -- buckets, numbered from 0, and `level` the largest power of two not above `count`, a field
  -- whose hash is `hash` (a whole number) lies in bucket hash mod 2 * level, or, where that
  -- bucket is not made yet, hash mod level. Bucket number `count` is made by moving to it the
  -- fields of bucket count - level that belong there, about half of them: no other bucket
  -- changes.

  -- A whole number below 2^32 for `field`, whose low bits (which pick its bucket) depend on
  -- every byte: the field's bytes as digits in base 31, taken four at a time (the last group
  -- padded with zeros) so that Lua calls string.byte once per four; then twice a product by an
  -- odd number (mod 2^32) and a swap of the two 16-bit halves, which brings the product's high
  -- bits, fed by all the others, down (ids that differ in their last character alone, as
  -- "v1", "v2", ..., land in buckets 6 to 126 of 64 for 4,000 ids without it). Every step is
  -- exact in Lua's doubles (below 2^53), and Lua 5.1 has no bit operations.
  -- The swap divides exactly rather than calling math.floor, and string.byte is looked up
  -- once per hash (inside: the library's top level may not touch `string`).
  function Core.field_hash(field)
    local byte = string.byte
    local h = 0
    for i = 1, #field, 4 do
      local a, b, c, d = byte(field, i, i + 3)
      h = (h * 923521 + a * 29791 + (b or 0) * 961 + (c or 0) * 31 + (d or 0)) % 4294967296
    end
    for _ = 1, 2 do
      h = (h * 40503) % 4294967296
      local low = h % 65536
      h = low * 65536 + (h - low) / 65536
    end
    return h
  end

  -- The largest power of two not above `count` (at least 1).
  function Core.bucket_level(count)
    local level = 1
    while level * 2 <= count do level = level * 2 end
    return level
  end

  function Core.bucket_of(hash, count, level)
    local bucket = hash % (2 * level)
    if bucket >= count then bucket = hash % level end
    return bucket
  end

  -- How many of `count` buckets a round that takes `round` (ms) should have gone through
  -- `elapsed` ms after it began: all of them once the round's time is up.
  function Core.sweep_due(count, elapsed, round)
    return math.min(count, math.floor(count * elapsed / round))
  end

  -- The bucket whose fields the next one, number `count`, takes some of.
  function Core.split_source(count)
    return count - Core.bucket_level(count)
  end

  ---------------------------------------------------------------------------------------------
  -- Members of the sorted sets that pair an agent with a conversation ("agent|conversation";
  -- '|' cannot appear in an identifier) or order waiting conversations ("<arrival>|id").

  function Core.pair(agent_id, conversation_id)
    return agent_id .. '|' .. conversation_id
  end

  -- What follows the first '|' of a member.
  function Core.after_bar(member)
    return string.sub(member, string.find(member, '|', 1, true) + 1)
  end

  -- The agent and the conversation of an "agent|conversation" member.
  function Core.split_pair(member)
    local bar = string.find(member, '|', 1, true)
    return string.sub(member, 1, bar - 1), string.sub(member, bar + 1)
  end

  -- The lex range of one agent's "agent|conversation" members, made once per agent while it
  -- is in use (two concatenations, about 2 thousand instructions, on every assignment).
  local agent_ranges = Core.kept_by_text(1024, function(agent_id)
    return { '[' .. agent_id .. '|', '[' .. agent_id .. '|\255' }
  end)
  function Core.agent_range(agent_id)
    local range = agent_ranges(agent_id)
    return range[1], range[2]
  end

  -- A waiting conversation's member (arrival first, so equal priorities keep arrival order)
  -- and score (higher priority first; '0' as text, the common case, costs no formatting).
  function Core.waiting_member(arrival, conversation_id)
    return string.format('%016d', arrival or 0) .. '|' .. conversation_id
  end

  -- With `aging_seconds` (priority_aging_seconds), each that many seconds of waiting counts
  -- as one priority level more. Two conversations compare the same whenever they are compared
  -- (priority + waited / aging, the same `now` for both), so the score is fixed when one starts
  -- waiting (`since_ms`) and nothing is rescored over time.
  function Core.waiting_score(priority, since_ms, aging_seconds)
    priority = tonumber(priority) or 0
    aging_seconds = tonumber(aging_seconds) or 0
    if aging_seconds > 0 and since_ms then
      return since_ms / 1000 / aging_seconds - priority
    end
    if priority == 0 then return '0' end
    return -priority
  end

  ---------------------------------------------------------------------------------------------
  -- Waiting: overflow and the estimate of a wait.

  -- When a waiting conversation overflows (ms since the epoch), or nil: `started_ms` is when it
  -- started waiting, `step_started_ms` when it reached its rule step; the project's limit and
  -- the step's count from each (seconds, 0 or nil = none). The earlier wins.
  function Core.overflow_due(started_ms, step_started_ms, project_max_s, step_max_s)
    local due
    project_max_s, step_max_s = tonumber(project_max_s) or 0, tonumber(step_max_s) or 0
    if project_max_s > 0 then due = started_ms + project_max_s * 1000 end
    if step_max_s > 0 then
      local step_due = step_started_ms + step_max_s * 1000
      if not due or step_due < due then due = step_due end
    end
    return due
  end

  -- How many departures a queue's estimate needs before it is given, and how much each new
  -- gap between departures weighs in the average.
  Core.ESTIMATE_HISTORY = 5
  Core.ESTIMATE_WEIGHT = 0.2

  -- The average gap between departures (assignments out of a queue while it holds someone),
  -- exponentially weighted, after one more gap of `gap_s` seconds.
  function Core.next_gap(average_s, gap_s, departures)
    average_s = tonumber(average_s)
    if not average_s or (tonumber(departures) or 0) == 0 then return gap_s end
    return Core.ESTIMATE_WEIGHT * gap_s + (1 - Core.ESTIMATE_WEIGHT) * average_s
  end

  -- The estimated wait (whole seconds) of the one at `position` in a queue whose departures come
  -- `average_s` apart, once there were enough of them; else nil.
  function Core.estimated_wait(position, average_s, departures)
    average_s = tonumber(average_s)
    if not average_s or (tonumber(departures) or 0) < Core.ESTIMATE_HISTORY then return nil end
    return math.floor(position * average_s + 0.5)
  end

  -- Whether a queue head (member, score) is served before another: priority, then arrival.
  function Core.served_before(member, score, other_member, other_score)
    return not other_member or score < other_score
      or (score == other_score and member < other_member)
  end

  ---------------------------------------------------------------------------------------------
  -- Rules: the first rule whose `when` matches the conversation routes it through its steps.

  local RECORD_FIELDS = { channel = 'ch', channel_account = 'ca', language = 'lang', category = 'cat' }

  -- A conversation field by the name a rule uses (an attribute, optionally `attributes.<x>`).
  function Core.field_value(record, name)
    local short = RECORD_FIELDS[name]
    if short then return record[short] end
    local attribute = string.match(name, '^attributes%.(.+)$') or name
    return (record.attrs or {})[attribute]
  end

  function Core.condition_holds(actual, expected)
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
  function Core.matching_rule(record, rules)
    if not rules then return nil end
    for i, rule in ipairs(rules) do
      local holds = true
      for name, expected in pairs(rule.when or {}) do
        if not Core.condition_holds(Core.field_value(record, name), expected) then
          holds = false
          break
        end
      end
      if holds then return i end
    end
    return nil
  end

  -- The conversation's current rule step, if any, and its rule.
  function Core.current_step(record, rules)
    local rule = record.ri and (rules or {})[record.ri]
    return rule and rule.route_to and rule.route_to[record.si or 1], rule
  end

  -- Whether the rule has a step after the conversation's current one (a wider one to widen to).
  function Core.has_next_step(record, rule)
    return rule ~= nil and rule.route_to[(record.si or 1) + 1] ~= nil
  end

  ---------------------------------------------------------------------------------------------
  -- Pools: a requirement (skills s, step channels sc, conversation channel ch or channel
  -- account ca) and who meets it.

  -- Skills come as a list (level 1 each) or as an object of levels, `{"spanish": 7}`; a rule
  -- step's skills likewise, as minimum levels. Either way: skill -> level.
  local LEVEL_ONE = 1
  function Core.skill_levels(skills)
    local levels = {}
    if not skills then return levels end
    if skills[1] ~= nil then
      for _, skill in ipairs(skills) do levels[skill] = LEVEL_ONE end
    else
      for skill, level in pairs(skills) do levels[skill] = tonumber(level) or LEVEL_ONE end
    end
    return levels
  end

  -- The requirement of a conversation at its rule step (nil: the base pool, no requirement).
  -- `by_channel`: some agents only serve some channels, or have a capacity per channel, so the
  -- conversation's channel counts. A step ordered by skill level (`o`) names a family of pools,
  -- one per sum of levels (`t`: see pools.lua).
  function Core.requirement(step, record, by_channel)
    if not step and not by_channel then return nil end
    local req = {}
    if step then
      req.s = step.skills
      req.sc = step.channels
      req.o = step.order_by
    end
    if by_channel then
      req.ch = record.ch
      req.ca = record.ca
    end
    return req
  end

  local function sorted_copy(list)
    local copy = {}
    for i, v in ipairs(list or {}) do copy[i] = v end
    table.sort(copy)
    return copy
  end

  -- A step's skills as sorted text items: "skill", or "skill:level" for a minimum above one (so
  -- a list and an object of level-one minimums name the same pool).
  local function skill_items(skills)
    local items = {}
    for skill, level in pairs(Core.skill_levels(skills)) do
      items[#items + 1] = level > LEVEL_ONE and (skill .. ':' .. level) or skill
    end
    table.sort(items)
    return items
  end

  -- A requirement as canonical text (the same requirement written in any order gives the
  -- same text, whose digest names its pool), or nil when it requires nothing.
  function Core.requirement_text(req)
    local s, sc = skill_items(req.s), sorted_copy(req.sc)
    local ch, ca = req.ch or '', req.ca or ''
    if #s == 0 and #sc == 0 and ch == '' and ca == '' and not req.o then return nil end
    local text = table.concat(s, '+') .. '/' .. table.concat(sc, '+') .. '/' .. ch .. '/' .. ca
    if req.o then text = text .. '/' .. req.o end
    return text
  end

  -- Whether an agent's skills (list or levels) reach every minimum of `needed`.
  local function has_all(skills, needed)
    if not needed or next(needed) == nil then return true end
    local have = Core.skill_levels(skills)
    for skill, minimum in pairs(Core.skill_levels(needed)) do
      if (have[skill] or 0) < minimum then return false end
    end
    return true
  end

  -- The sum of the agent's levels in the step's skills (what `order_by: skill_level` ranks).
  function Core.skill_sum(cfg, needed)
    local have = Core.skill_levels(cfg.skills)
    local sum = 0
    for skill in pairs(Core.skill_levels(needed)) do sum = sum + (have[skill] or 0) end
    return sum
  end

  -- The tiers of a family ordered by skill level: its sums, highest first, with `sum` added.
  function Core.with_tier(tiers, sum)
    local sorted = {}
    for _, t in ipairs(tiers or {}) do
      if t == sum then return tiers, false end
      sorted[#sorted + 1] = t
    end
    sorted[#sorted + 1] = sum
    table.sort(sorted, function(a, b) return a > b end)
    return sorted, true
  end

  -- Whether an agent (its configuration) receives from a channel or channel account.
  function Core.receives_from(cfg, channel)
    if cfg.channels == nil then return true end
    for _, c in ipairs(cfg.channels) do
      if c == channel then return true end
    end
    return false
  end

  -- Does the agent meet the requirement? (A tier of a family, `t`, also wants that exact sum.)
  function Core.qualifies(cfg, req)
    if not has_all(cfg.skills, req.s) then return false end
    for _, channel in ipairs(req.sc or {}) do
      if not Core.receives_from(cfg, channel) then return false end
    end
    if (req.ch or req.ca) and cfg.channels ~= nil then
      if not ((req.ch and Core.receives_from(cfg, req.ch))
          or (req.ca and Core.receives_from(cfg, req.ca))) then
        return false
      end
    end
    if req.t and Core.skill_sum(cfg, req.s) ~= tonumber(req.t) then return false end
    return true
  end

  ---------------------------------------------------------------------------------------------
  -- Eligibility.

  -- Whether a status lets an agent receive conversations, under the project's settings.
  function Core.status_receives(status, include_busy, include_offline)
    if status == 'online' then return true end
    if status == 'busy' then return include_busy end
    return include_offline
  end

  function Core.max_concurrent(cfg)
    return tonumber(cfg.max_concurrent) or 0
  end

  -- Whether the agent may receive automatically at all (`online` in the pools' sense): it takes
  -- part in automatic assignment, has room for at least one, and its status lets it receive.
  function Core.receives(cfg, status_lets_it)
    return cfg.auto_assign ~= false and Core.max_concurrent(cfg) > 0 and status_lets_it and true
      or false
  end

  -- Whether it has reached its `daily_limit`, with `today` assignments so far.
  function Core.daily_limit_reached(cfg, today)
    local limit = tonumber(cfg.daily_limit)
    return limit ~= nil and (tonumber(today) or 0) >= limit
  end

  -- Whether an agent holding `load` open conversations has room for one more.
  function Core.has_room(cfg, load)
    return load < Core.max_concurrent(cfg)
  end

  -- The agent's capacity for one channel (nil: bounded by max_concurrent alone).
  function Core.channel_capacity(cfg, channel)
    local capacity = channel and cfg.capacity
    return capacity and tonumber(capacity[channel]) or nil
  end

  -- Whether the agent has a capacity for any channel.
  function Core.has_channel_capacity(cfg)
    return cfg ~= nil and type(cfg.capacity) == 'table' and next(cfg.capacity) ~= nil
  end

  -- Whether it has room for one more conversation of `channel`, holding `channel_load` of them.
  function Core.has_channel_room(cfg, channel, channel_load)
    local capacity = Core.channel_capacity(cfg, channel)
    return capacity == nil or channel_load < capacity
  end

  -- Precedence: level 1 is served first; agents outside the levels come after every level.
  function Core.bucket(cfg)
    return tonumber(cfg.priority) or Core.OUTSIDE
  end

  -- Why an agent cannot take a conversation of a pool now, or nil when it can: the first of
  -- `auto_assign_off`, `lacks_skills`, `channel`, `offline`, `busy`, `no_capacity`
  -- (max_concurrent 0), `at_max_concurrent`, `at_channel_capacity`, `at_daily_limit`,
  -- `outside_level` (another precedence level serves: `serving`, nil when none does), in that
  -- order. `status_lets_it` says whether its status receives under the settings;
  -- `channel_load` is how many of the pool's channel it holds (when it has a capacity for it).
  function Core.exclusion(cfg, status, status_lets_it, load, today, req, serving, channel_load)
    if cfg.auto_assign == false then return 'auto_assign_off' end
    if req then
      local skills = { s = req.s }
      if not Core.qualifies(cfg, skills) then return 'lacks_skills' end
      if not Core.qualifies(cfg, req) then return 'channel' end
    end
    if not status_lets_it then
      if status == 'busy' then return 'busy' end
      return 'offline'
    end
    if Core.max_concurrent(cfg) == 0 then return 'no_capacity' end
    if not Core.has_room(cfg, load) then return 'at_max_concurrent' end
    if req and not Core.has_channel_room(cfg, req.ch, channel_load or 0) then
      return 'at_channel_capacity'
    end
    if Core.daily_limit_reached(cfg, today) then return 'at_daily_limit' end
    if serving and Core.bucket(cfg) ~= serving then return 'outside_level' end
    return nil
  end

  ---------------------------------------------------------------------------------------------
  -- Strategies' arithmetic.

  -- least_loaded: an agent's score in a pool is the level's bucket and its load, `whole` (the
  -- same in each of its pools: Core.load_whole), and a fraction that breaks ties between equal
  -- loads, `tie` sixty-fourths (a random whole number below LOAD_FRACTION_TIES, so at most
  -- 62/64): in the largest bucket a double holds no finer fraction, and one closer to 1 would
  -- round up to the next load. As text: Redis prints a Lua number given to a command with
  -- "%.17g", a costly printf, for every pool the agent is placed in; the whole part's text is
  -- kept by value, the 63 fractions' once made.
  function Core.load_whole(cfg, load)
    return Core.whole_text(Core.bucket(cfg) * Core.BUCKET + load)
  end

  local fraction_texts = {}
  function Core.load_score(whole, tie)
    local fraction = fraction_texts[tie]
    if not fraction then
      fraction = string.sub(string.format('%.6f', tie / 64), 2)
      fraction_texts[tie] = fraction
    end
    return whole .. fraction
  end

  -- least_loaded in whole numbers: the load counts in steps of LOAD_TIES, ties broken by `tie`
  -- (a random whole number below LOAD_TIES), as text. Redis keeps a whole score of a small
  -- sorted set (a listpack) as an integer, where a fraction is kept as text that every insert
  -- parses again for each member it passes. The two scales order loads alike but cannot share
  -- a pool: a project uses this one once its loads are kept per agent (see load.lua), and all
  -- its pools are scored again when it switches. Exact: at most OUTSIDE * BUCKET + BUCKET,
  -- far below 2^53, with loads capped at WHOLE_LOAD_CAP (the level's range holds 1e11).
  Core.WHOLE_LOAD_CAP = 90000000
  function Core.whole_load_score(cfg, load, tie)
    return string.format('%d', Core.bucket(cfg) * Core.BUCKET
      + math.min(load, Core.WHOLE_LOAD_CAP) * Core.LOAD_TIES + tie)
  end

  -- least_loaded with `tie_break: longest_idle`: within one precedence level (a key of its
  -- own, so no bucket prefix eats the precision), load first, then the number of the agent's
  -- last assignment (0: never assigned, the longest idle). Exact integers up to 2^53: loads up
  -- to IDLE_LOAD_CAP, assignment numbers below IDLE_RANGE.
  Core.IDLE_RANGE = 1e12
  Core.IDLE_LOAD_CAP = 8999
  function Core.idle_score(load, last_assignment)
    return math.min(load, Core.IDLE_LOAD_CAP) * Core.IDLE_RANGE + (tonumber(last_assignment) or 0)
  end

  -- round_robin: `order`, else insertion order; the insertion sequence breaks ties so every
  -- position is distinct (below BUCKET for orders up to 2e7).
  function Core.order_position(cfg)
    local seq = tonumber(cfg.seq) or 0
    local position = tonumber(cfg.order) or seq
    return position * Core.ORDER_TIE_RANGE + (seq % Core.ORDER_TIE_RANGE)
  end

  function Core.order_score(cfg)
    return Core.bucket(cfg) * Core.BUCKET + Core.order_position(cfg)
  end

  -- weighted: `weight`, else `daily_limit`, else 1.
  function Core.weight_of(cfg)
    return tonumber(cfg.weight) or tonumber(cfg.daily_limit) or 1
  end

  -- weighted (stride scheduling): an agent (re)joining starts at the current virtual time, so
  -- time spent away is not paid back as a burst; each assignment moves its pass by 1/weight.
  function Core.joining_pass(pass, vtime)
    pass = tonumber(pass) or 0
    vtime = tonumber(vtime) or 0
    if pass < vtime then return vtime, true end
    return pass, false
  end

  function Core.pass_after_assignment(pass, cfg)
    return (tonumber(pass) or 0) + 1 / Core.weight_of(cfg)
  end

  -- The score range of one precedence level in a pool's sorted set, as ZRANGE BYSCORE bounds
  -- ('-inf', '+inf' for all levels).
  function Core.level_range(level)
    if not level then return '-inf', '+inf' end
    return level * Core.BUCKET, '(' .. (level + 1) * Core.BUCKET
  end

  -- Whether a score is in one precedence level's range (any, when `level` is nil).
  function Core.in_level(score, level)
    return not level or (score >= level * Core.BUCKET and score < (level + 1) * Core.BUCKET)
  end
end
