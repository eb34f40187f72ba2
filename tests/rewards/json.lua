-- json.lua — test reward exercising v3.json and v3.utf8.
return function(s)
  local t = assert(v3.json.decode('{"a":[1,2,{"b":null}],"c":"x"}'))
  local bad, msg = v3.json.decode("{oops")
  return {
    score = t.a[2],
    enc = v3.json.encode(t),
    bad = bad == nil and msg ~= nil,
    valid = v3.utf8.valid("h\xc3\xa9") and not v3.utf8.valid("\xff"),
    san = v3.utf8.sanitize("a\xffb"),
  }
end
