-- standard.lua: the standard functions and libraries the library calls, as its own locals.
--
-- A Redis function reads a global through the globals table, which holds none: its
-- metatable's __index leads to the table of what scripts may use. Every `tonumber`, `ipairs`,
-- `string.sub` or `cjson.encode` was two table lookups and a metatable check (about 150
-- instructions) before the call itself, some fifty times in a creation. As locals they are
-- upvalues, read in one instruction. The library's top level, run when it is loaded, may not
-- read them (Redis gives it only `redis.register_function` and a few more): they are bound by
-- the first call of any of its functions (`bind_standard_library`, first thing in each), and
-- the top level uses none of them but `redis`: while the library loads it is the API a
-- library's top level has (`redis.register_function`), and the first call binds it to the
-- whole one (`redis.call`, ten times in a creation).

-- What the globals hold, read when called (declared before the locals of the same names).
local function standard_library()
  return tonumber, tostring, type, pairs, ipairs, next, unpack, error, pcall, setmetatable,
    string, table, math, cjson, cmsgpack, redis
end

local redis = redis
local tonumber, tostring, type, pairs, ipairs, next, unpack, error, pcall, setmetatable, string,
  table, math, cjson, cmsgpack

-- Called first thing by each function of the library while `tonumber` is not bound yet.
local function bind_standard_library()
  tonumber, tostring, type, pairs, ipairs, next, unpack, error, pcall, setmetatable, string,
    table, math, cjson, cmsgpack, redis = standard_library()
end
