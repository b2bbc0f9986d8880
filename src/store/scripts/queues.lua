-- queues.lua: the waiting queues: waiting, overflowing, positions and their estimates. Module
-- `Queues`; uses KEYS waiting, base_waiting, waited, meta (qg:, ql:, qc: of each pool), the
-- pools' waiting keys, and ARGV now.
--
-- Every waiting conversation is a member of `waiting` (what claims and `inspect` read) and of
-- its pool's queue, "<arrival, 16 digits>|conversation", scored -priority (minus what its wait
-- adds, with priority aging): served by priority, then arrival. While the project has no
-- requirement pool the two are one key (the base pool's queue is `waiting` itself), so an
-- enqueue or a dequeue writes once. `waited` holds when each started waiting.
--
-- A waiting record keeps: ws when this wait started (ms), ss when it reached its current rule
-- step, aw when it first waited (the aging score counts from there, so a conversation handed
-- back keeps its place), ot the overflow timer's number, qn the position timer's, qp the
-- position last published, rx the agent that handed it back (not given it again while another
-- is eligible).

do
  -- Waiting queues found empty in this call (key -> true), until a conversation joins one: the
  -- drain looks at the queues of the pools each event touched, and in a batch of creations
  -- that nobody waits behind, every look after the first would ask Redis again for nothing.
  local known_empty
  Call.on_call(function() known_empty = NONE end) -- (until the first: see NONE)

  -- A conversation joins the queue `key` (every write that adds to a waiting queue says so).
  function Queues.joined(key)
    if known_empty ~= NONE then known_empty[key] = nil end
  end

  local function add(pool_queue, score, member)
    redis.call('ZADD', K.waiting, score, member)
    Queues.joined(K.waiting)
    if pool_queue ~= K.waiting then
      redis.call('ZADD', pool_queue, score, member)
      Queues.joined(pool_queue)
    end
  end

  -- Takes a member out of `waiting` and of its pool's queue.
  function Queues.remove(pool_queue, member)
    redis.call('ZREM', K.waiting, member)
    if pool_queue ~= K.waiting then redis.call('ZREM', pool_queue, member) end
  end

  -- A queue's average gap between departures, when it last lost one, and how many it lost.
  local function stats(pool_id)
    local values = redis.call('HMGET', K.meta, 'qg:' .. pool_id, 'ql:' .. pool_id,
      'qc:' .. pool_id)
    return tonumber(values[1]), tonumber(values[2]), tonumber(values[3]) or 0
  end

  -- A conversation left the pool's queue for an agent: one more gap between departures.
  local function departed(pool_id)
    local average, last, departures = stats(pool_id)
    if not last then return end
    local gap = math.max(NOW - last, 0) / 1000
    redis.call('HSET', K.meta, 'qg:' .. pool_id, Core.next_gap(average, gap, departures),
      'ql:' .. pool_id, NOW_TEXT, 'qc:' .. pool_id, departures + 1)
  end

  -- Takes the conversation out of the waiting queues; `departing` when it leaves for an agent
  -- (the queue's estimate counts it).
  function Queues.dequeue(record, departing)
    if record.w then
      Queues.remove(Pools.by_id(record.pw).waiting, record.w)
      redis.call('ZREM', K.waited, Core.after_bar(record.w))
      if departing and SETTINGS.queue_position_updates then departed(record.pw or 'base') end
      record.w = nil
    end
    -- (Cleared only when set: see records.lua.)
    if record.pw then record.pw = nil end
  end

  -- Why a conversation waits, in `conversation.queued`: the mode holds it, or nobody is
  -- eligible.
  function Queues.why_waiting()
    local mode = SETTINGS.mode
    if mode == 'auto' then return 'no_eligible_agent' end
    return mode
  end

  -- The conversation no longer waits: the platform decides what follows (an offline form,
  -- another team). It is assigned again only if the platform sends it again.
  function Queues.overflow(conversation_id, record, reason)
    Queues.dequeue(record)
    local waited = record.ws and math.floor(math.max(NOW - record.ws, 0) / 1000) or 0
    record.s = 'overflowed'
    record.a = nil
    record.ws, record.ss, record.rx = nil, nil, nil
    local sequence = Call.next_sequence(record)
    Records.save(conversation_id, record)
    Call.emit('conversation.overflowed', {
      conversation_id = conversation_id, reason = reason, waited_seconds = waited,
    }, sequence)
  end

  -- The conversation's place in its pool's queue and how many wait there, with the estimate
  -- of its wait when the queue's history allows one.
  local function position(record)
    local queue = Pools.by_id(record.pw).waiting
    local rank = redis.call('ZRANK', queue, record.w)
    if not rank then return nil end
    local place = rank + 1
    local average, _, departures = stats(record.pw or 'base')
    return place, redis.call('ZCARD', queue), Core.estimated_wait(place, average, departures)
  end

  -- Publishes where the conversation stands in its queue if that changed since the last time
  -- (or `always`), and arms the next look, one interval later.
  local function report_position(conversation_id, record, always)
    local place, waiting, estimate = position(record)
    if place and (always or place ~= tonumber(record.qp)) then
      record.qp = place
      Call.emit('conversation.queue_position', {
        conversation_id = conversation_id, position = place, waiting = waiting,
        estimated_wait_seconds = estimate,
      }, Call.next_sequence(record))
    end
    record.qn = (tonumber(record.qn) or 0) + 1
    local interval = tonumber(SETTINGS.queue_position_interval_seconds) or 10
    Call.arm_timer(interval * 1000, 'queue_position:' .. conversation_id .. ':' .. record.qn,
      { timer = 'queue_position', conversation_id = conversation_id, token = record.qn })
  end

  -- Puts the conversation in the waiting queues (all conversations, and its pool's) and
  -- publishes why; or, when its queue is full, it overflows. A rule step with a wait arms its
  -- escalation timer; a limit on waiting, the overflow timer; position updates, their first.
  function Queues.enqueue(conversation_id, record, reason, pool)
    local starting = record.s ~= 'waiting'
    Queues.dequeue(record)
    pool = pool or Routing.pool_of(record)
    local step, rule = Routing.current_step(record)
    local max_waiting = step and tonumber(step.max_waiting)
      or tonumber(SETTINGS.max_waiting) or 0
    local updates = SETTINGS.queue_position_updates
    local queued = (max_waiting > 0 or updates) and redis.call('ZCARD', pool.waiting)
    if max_waiting > 0 and queued >= max_waiting then
      return Queues.overflow(conversation_id, record, 'queue_full')
    end
    if updates and queued == 0 then
      -- A busy period starts: the gap to its first departure counts from now.
      redis.call('HSET', K.meta, 'ql:' .. pool.id, NOW_TEXT)
    end
    if starting then record.ws = NOW end
    record.ss = NOW
    local aging = tonumber(SETTINGS.priority_aging_seconds) or 0
    if aging > 0 and not record.aw then record.aw = record.ws end
    local member = Core.waiting_member(record.n, conversation_id)
    add(pool.waiting, Core.waiting_score(record.p, record.aw, aging), member)
    redis.call('ZADD', K.waited, record.ws, conversation_id)
    record.s = 'waiting'
    record.a = nil
    record.w = member
    record.pw = pool.id
    local wait = step and tonumber(step.wait_seconds) or 0
    if wait > 0 and Core.has_next_step(record, rule) then
      record.tn = (tonumber(record.tn) or 0) + 1
      Call.arm_timer(wait * 1000, 'rule_step:' .. conversation_id .. ':' .. record.tn,
        { timer = 'rule_step', conversation_id = conversation_id, token = record.tn })
    end
    local due = Core.overflow_due(record.ws, record.ss, SETTINGS.max_wait_seconds,
      step and step.max_wait_seconds)
    if due then
      record.ot = (tonumber(record.ot) or 0) + 1
      Call.arm_timer(math.max(due - NOW, 0), 'max_wait:' .. conversation_id .. ':' .. record.ot,
        { timer = 'max_wait', conversation_id = conversation_id, token = record.ot })
    end
    local sequence = Call.next_sequence(record)
    Call.emit('conversation.queued', { conversation_id = conversation_id, reason = reason },
      sequence)
    if updates and starting then report_position(conversation_id, record, true) end
    Records.save(conversation_id, record)
  end

  -- The position timer of a waiting conversation: publishes its place if it moved.
  function Queues.look_again(conversation_id, record)
    if not SETTINGS.queue_position_updates then return end
    report_position(conversation_id, record, false)
    Records.save(conversation_id, record)
  end

  -- priority_aging_seconds changed: every waiting conversation's score is computed again (the
  -- one moment scores change, since they are comparable only under one setting).
  function Queues.rescore()
    local aging = tonumber(SETTINGS.priority_aging_seconds) or 0
    for _, member in ipairs(redis.call('ZRANGE', K.waiting, 0, -1)) do
      local conversation_id = Core.after_bar(member)
      local record = Records.get(conversation_id)
      if record and record.s == 'waiting' and record.w == member then
        if aging > 0 and not record.aw then
          record.aw = record.ws or NOW
          Records.save(conversation_id, record)
        end
        add(Pools.by_id(record.pw).waiting, Core.waiting_score(record.p, record.aw, aging), member)
      end
    end
  end

  -- The first agent limited by channel arrived: every waiting conversation moves to the queue
  -- of the pool that now names its channel, keeping its place (member and score). Rare, so it
  -- may visit them all.
  function Queues.reroute()
    local waiting = redis.call('ZRANGE', K.waiting, 0, -1, 'WITHSCORES')
    for i = 1, #waiting, 2 do
      local member, score = waiting[i], waiting[i + 1]
      local conversation_id = Core.after_bar(member)
      local record = Records.get(conversation_id)
      if record and record.s == 'waiting' and record.w == member then
        local pool, from = Routing.pool_of(record), Pools.by_id(record.pw)
        if pool.id ~= from.id then
          if from.waiting ~= K.waiting then redis.call('ZREM', from.waiting, member) end
          redis.call('ZADD', pool.waiting, score, member)
          Queues.joined(pool.waiting)
          record.pw = pool.id
          Records.save(conversation_id, record)
        end
      end
    end
  end

  -- The head of a waiting queue: its member and score, or nil.
  function Queues.head(key)
    if known_empty[key] then return nil end
    local head = redis.call('ZRANGE', key, '0', '0', 'WITHSCORES')
    if not head[1] then
      known_empty = with_entry(known_empty, key, true)
      return nil
    end
    return head[1], tonumber(head[2])
  end

  -- How many stale heads "get next" clears before it gives up.
  local MAX_STALE_HEADS = 100

  -- "Get next": the conversation an agent (`cfg`) would take from the queues of the pools it
  -- belongs to (the best head of them), or nil; not from a channel it has no room for. A head
  -- whose conversation no longer waits there (a call that failed halfway can leave one) is
  -- taken out of the queues, and the next tried.
  function Queues.next_for(agent_id, cfg)
    local queues = { Pools.base().waiting }
    local by_channel = Core.has_channel_capacity(cfg)
    for _, id in ipairs(Pools.memberships(agent_id)) do
      local req = by_channel and Pools.requirement(id)
      if not (req and req.ch) or Load.channel_room(agent_id, cfg, req.ch) then
        queues[#queues + 1] = Pools.by_id(id).waiting
      end
    end
    for _ = 1, MAX_STALE_HEADS do
      local head, head_score, head_queue
      for _, key in ipairs(queues) do
        local member, score = Queues.head(key)
        if member and Core.served_before(member, score, head, head_score) then
          head, head_score, head_queue = member, score, key
        end
      end
      if not head then return nil end
      local conversation_id = Core.after_bar(head)
      local record = Records.get(conversation_id)
      if record and record.s == 'waiting' and record.w == head then return conversation_id end
      Queues.remove(head_queue, head)
    end
    return nil
  end
end
