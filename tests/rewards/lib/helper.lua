-- helper.lua — a module for `require` tests.
local M = {}
function M.double(x) return 2 * x end
return M
