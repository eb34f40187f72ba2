-- loop_a.lua — requires loop_b, which requires loop_a: a require loop must be an error.
return require("loop_b")
