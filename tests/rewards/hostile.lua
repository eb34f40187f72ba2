-- hostile.lua — test reward whose behaviour the completion selects: "okN" scores N; every other
-- word runs one attack on the sandbox (see tests/unit/test_reward_host.c).
return function(s)
  local c = s.completion
  if c == "loop" then
    while true do end
  elseif c == "pcall_loop" then
    while true do pcall(function() while true do end end) end
  elseif c == "alloc" then
    local t, i = {}, 0
    while true do i = i + 1; t[i] = string.rep("x", 4096) .. i end
  elseif c == "recurse" then
    local function r(n) return 1 + r(n + 1) end
    return r(1)
  elseif c == "bigstr" then
    local x = "x"
    while true do x = x .. x end
  elseif c == "rep" then
    return #string.rep("a", 1 << 30)
  elseif c == "pattern" then
    return string.rep('a', 40000):find('.-b') and 1 or 0
  elseif c == "c_recurse" then
    local function f() return ("a"):gsub("a", f) end
    return f()
  elseif c == "move" then
    return #table.move({}, 1, 1 << 40, 1, {})
  elseif c == "gc" then
    setmetatable({}, {__gc = function() while true do end end})
    return 1
  elseif c == "xpcall" then
    return xpcall(error, function() while true do end end)
  elseif c == "os" then
    return os.execute("true")
  elseif c == "io" then
    return io.open("/etc/passwd")
  elseif c == "bytecode" then
    local f, e = load("\27LuaT\0\25\147\r\n\26\n")
    if not f then error(e) end
    return f()
  elseif c == "require_c" then
    return require("socket.core")
  elseif c == "require_path" then
    return require("../../etc/passwd")
  elseif c == "dofile" then
    return dofile("/etc/passwd")
  elseif c == "badret" then
    return "a string"
  elseif c == "nan" then
    return 0 / 0
  elseif c == "error" then
    error("boom")
  elseif c == "skip" then
    return nil
  end
  return tonumber(c:match("^ok(%-?%d+)$")) or -5
end
