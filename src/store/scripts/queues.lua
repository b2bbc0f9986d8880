-- queues.lua: the waiting queues. Module `Queues`; uses KEYS waiting, base_waiting, the pools'
-- waiting keys, and no ARGV of its own.
--
-- Every waiting conversation is a member of `waiting` (what claims and `inspect` read) and of
-- its pool's queue, "<arrival, 16 digits>|conversation", scored -priority: served by priority,
-- then arrival. While the project has no requirement pool the two are one key (the base pool's
-- queue is `waiting` itself), so an enqueue or a dequeue writes once.

do
  local function add(pool_queue, score, member)
    redis.call('ZADD', K.waiting, score, member)
    if pool_queue ~= K.waiting then redis.call('ZADD', pool_queue, score, member) end
  end

  -- Takes a member out of `waiting` and of its pool's queue.
  function Queues.remove(pool_queue, member)
    redis.call('ZREM', K.waiting, member)
    if pool_queue ~= K.waiting then redis.call('ZREM', pool_queue, member) end
  end

  -- Takes the conversation out of the waiting queues.
  function Queues.dequeue(record)
    if record.w then Queues.remove(Pools.by_id(record.pw).waiting, record.w) end
    record.w = nil
    record.pw = nil
  end

  -- Why a conversation waits, in `conversation.queued`: the mode holds it, or nobody is
  -- eligible.
  function Queues.why_waiting()
    local mode = Call.setting('mode')
    if mode == 'auto' then return 'no_eligible_agent' end
    return mode
  end

  -- Puts the conversation in the waiting queues (all conversations, and its pool's) and
  -- publishes why. A rule step with a wait arms its escalation timer.
  function Queues.enqueue(conversation_id, record, reason, pool)
    Queues.dequeue(record)
    pool = pool or Routing.pool_of(record)
    local member = Core.waiting_member(record.n, conversation_id)
    add(pool.waiting, Core.waiting_score(record.p), member)
    record.s = 'waiting'
    record.a = nil
    record.w = member
    record.pw = pool.id
    local step, rule = Routing.current_step(record)
    local wait = step and tonumber(step.wait_seconds) or 0
    if wait > 0 and Core.has_next_step(record, rule) then
      record.tn = (tonumber(record.tn) or 0) + 1
      Call.arm_timer(wait * 1000, 'rule_step:' .. conversation_id .. ':' .. record.tn,
        { timer = 'rule_step', conversation_id = conversation_id, token = record.tn })
    end
    local sequence = Call.next_sequence(record)
    Records.save(conversation_id, record)
    Call.emit('conversation.queued', { conversation_id = conversation_id, reason = reason },
      sequence)
  end

  -- The head of a waiting queue: its member and score, or nil.
  function Queues.head(key)
    local head = redis.call('ZRANGE', key, '0', '0', 'WITHSCORES')
    if not head[1] then return nil end
    return head[1], tonumber(head[2])
  end

  -- How many stale heads "get next" clears before it gives up.
  local MAX_STALE_HEADS = 100

  -- "Get next": the conversation an agent would take from the queues of the pools it belongs
  -- to (the best head of them), or nil. A head whose conversation no longer waits there (a
  -- call that failed halfway can leave one) is taken out of the queues, and the next tried.
  function Queues.next_for(agent_id)
    local queues = { Pools.base().waiting }
    for _, id in ipairs(Pools.memberships(agent_id)) do
      queues[#queues + 1] = Pools.by_id(id).waiting
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
