-- activity.lua: conversations gone quiet (`inactive_after_seconds`) and the wrap-up after a
-- close (`wrap_up_seconds`). Module `Activity`; uses KEYS owned, inactive and ARGV now.
--
-- Both are armed by timers, never by polling. An open conversation keeps lm (when it was last
-- assigned or the visitor last wrote, ms), it (the number of its inactivity timer) and iu
-- (when that timer is due, while one is armed). One timer at a time per conversation: a
-- message only moves lm, and the timer, when it fires, either finds the conversation quiet
-- long enough or arms itself again for what is left. A closed conversation in its wrap-up
-- keeps wu, the number of its wrap-up timer (see load.lua).

do
  -- A timer this close to its due time finds the conversation quiet enough (workers' clocks and
  -- the broker's delays are not exact).
  local EARLY_MS = 1000

  local function inactive_after_ms()
    return (tonumber(SETTINGS.inactive_after_seconds) or 0) * 1000
  end

  -- Arms the conversation's inactivity timer for `due` (ms); earlier ones no longer apply.
  local function arm(conversation_id, record, due)
    record.it = (tonumber(record.it) or 0) + 1
    record.iu = due
    Call.arm_timer(math.max(due - NOW, 0), 'inactivity:' .. conversation_id .. ':' .. record.it,
      { timer = 'inactivity', conversation_id = conversation_id, token = record.it })
  end

  -- The conversation was just assigned (the record is saved by the caller, or was): its quiet
  -- time counts from now.
  function Activity.assigned(conversation_id, record)
    local after = inactive_after_ms()
    if after == 0 then return end
    record.lm = NOW
    arm(conversation_id, record, NOW + after)
  end

  -- The visitor wrote on an open conversation (the caller saves the record): it is active
  -- again, and counts in its agent's load again even above its limits (until something closes,
  -- nothing new goes to that agent). Returns whether it counts again.
  function Activity.visitor_wrote(conversation_id, record)
    local after = inactive_after_ms()
    if after == 0 then return false end
    record.lm = NOW
    local was_inactive = record.ia ~= nil
    if was_inactive then Load.activate(conversation_id, record) end
    if not record.iu then arm(conversation_id, record, NOW + after) end
    return was_inactive
  end

  -- The inactivity timer: quiet long enough, the conversation stops counting; else the timer
  -- is armed again for the time left. Returns whether the agent's load changed.
  function Activity.timer_fired(conversation_id, record)
    record.iu = nil
    local after = inactive_after_ms()
    if after == 0 or record.ia then return false end
    local due = (tonumber(record.lm) or NOW) + after
    if due - EARLY_MS > NOW then
      arm(conversation_id, record, due)
      return false
    end
    Load.deactivate(conversation_id, record)
    return true
  end

  -- inactive_after_seconds changed: every open conversation's timer is armed again under the
  -- new value (counting from its last message, or from now for one never timed), and when it
  -- is off, every inactive conversation counts again. Rare, so it may visit them all.
  function Activity.setting_changed()
    local after = inactive_after_ms()
    local agents = {}
    local function visit(act)
      return function(conversation_id)
        local record = Records.get(conversation_id)
        if record and record.s == 'open' then
          act(conversation_id, record)
          Records.save(conversation_id, record)
          agents[record.a] = true
        end
      end
    end
    if after == 0 then
      local activate = visit(function(conversation_id, record)
        Load.activate(conversation_id, record)
        record.iu = nil
      end)
      for _, member in ipairs(redis.call('ZRANGE', K.inactive, 0, -1)) do
        activate(Core.after_bar(member))
      end
    else
      Load.each_counted(visit(function(conversation_id, record)
        arm(conversation_id, record, (tonumber(record.lm) or NOW) + after)
      end))
    end
    return agents
  end

  -- The conversation closes: with a wrap-up, its agent keeps the slot until the wrap-up timer
  -- fires (the caller saves the record); else the slot is free now. Returns whether the agent's
  -- load changed now.
  function Activity.closing(conversation_id, record)
    record.iu = nil
    local wrap_up = tonumber(SETTINGS.wrap_up_seconds) or 0
    if wrap_up > 0 and record.a and not record.ia then
      record.wu = (tonumber(record.wu) or 0) + 1
      Call.arm_timer(wrap_up * 1000, 'wrap_up:' .. conversation_id .. ':' .. record.wu,
        { timer = 'wrap_up', conversation_id = conversation_id, token = record.wu })
      return false
    end
    Load.drop(conversation_id, record)
    return true
  end

  -- The wrap-up is over (its timer fired, or the conversation came back, or its agent left):
  -- the slot is its agent's again. Returns the agent, or nil when none was in wrap-up.
  function Activity.end_wrap_up(conversation_id, record)
    if not record.wu then return nil end
    local agent_id = record.a
    Load.drop(conversation_id, record)
    return agent_id
  end
end
