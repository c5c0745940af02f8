-- cbreaker-scm-1.rockspec -- `luarocks make` from a checkout builds the Lua
-- module with CMake (as luv does) and installs `cbreaker` (the Lua files)
-- and `cbreaker.core` into the rocks tree.  Only the module: the host, the
-- C library and its headers come from `cmake --install` (README).
rockspec_format = "3.0"
package = "cbreaker"
version = "scm-1"
source = {
  -- No public repository yet: `luarocks make` builds the working tree and
  -- does not read this.
  url = "git+file://./cbreaker",
}
description = {
  summary = "Circuit breakers, per-session breaker maps and Thompson sampling on a C core",
  detailed = [[
Circuit breakers for the glue code of LLM and agent orchestrators: breaker
state machines, per-session breaker maps, Thompson-sampling provider
selection and Redis persistence in C, with the orchestration policy in Lua.
]],
}
dependencies = {
  "lua >= 5.4, < 5.5",
}
-- The Redis store's libraries (Debian: libhiredis-dev libcjson-dev libssl-dev).
external_dependencies = {
  HIREDIS = { header = "hiredis/hiredis.h" },
  CJSON = { header = "cjson/cJSON.h" },
  OPENSSL = { header = "openssl/hmac.h" },
}
build = {
  type = "cmake",
  variables = {
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
    CMAKE_BUILD_TYPE = "Release",
    CB_LUA_ONLY = "ON",
    CB_INSTALL_LMOD = "$(LUADIR)",
    CB_INSTALL_CMOD = "$(LIBDIR)",
  },
}
