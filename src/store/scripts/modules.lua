-- modules.lua: the library's modules, a table each, declared before any is filled in, so that
-- a module may call one that comes after it (calls happen at run time, when all are filled).
-- Each file below fills one (or two); the state of the call they share is in call.lua.
local Core, Call, Versions, Meta, Agents, Pools, Routing, Records, Visitors, Queues =
  {}, {}, {}, {}, {}, {}, {}, {}, {}, {}
local Conversations, Modes, Handlers, Timers = {}, {}, {}, {}
local Load, Activity, Presence, Buckets = {}, {}, {}, {}
