-- math.lua — test reward for the v3.math binding (skips if v3.math is missing: the test fails).
return function(s)
  if not v3.math then return nil end
  local ans, kind = v3.math.extract(s.completion)
  return {
    score = v3.math.equal(s.answer, ans or s.completion) and 1.0 or 0.0,
    extracted = ans, kind = kind,
    accuracy = v3.math.accuracy(s.completion, "$" .. s.answer .. "$"),
  }
end
