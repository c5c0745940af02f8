-- Loaded by busted before the specs (see .busted and tests/CMakeLists.txt).
-- Under the stock interpreter the module comes from CB_CPATH; in the host it
-- is preloaded.
local cpath = os.getenv("CB_CPATH")
if cpath and cpath ~= "" then
  package.cpath = cpath .. ";" .. package.cpath
end
