-- Daemon start-up with a big job store: the pipeline opens the store in --data, recovers it,
-- resumes every live job (each in its own task) and is ready; then it stops at once.
-- Prints "startup SECONDS", measured from BENCH_T0 (unix time taken by the caller just before
-- it started the process) to the runner started.
-- Usage: BENCH_T0=... assetd bench/startup.lua --data DIR BASE_URL ROOT
local base, root = ...
local t0 = assert(tonumber(os.getenv("BENCH_T0")), "BENCH_T0 not set")
assetd.pipeline{storage = {root = root}, sora = {base_url = base}, notion = {enabled = false}}
print(string.format("startup %.4f", assetd.now() - t0))
io.stdout:flush()
assetd.stop(0)
