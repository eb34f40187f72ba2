return function(s)
  return (
end
