-- loop_b.lua — see loop_a.lua.
return require("loop_a")
