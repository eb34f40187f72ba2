-- pkg/inner.lua — required as "pkg.inner" (dots become directories).
return { value = 41 }
