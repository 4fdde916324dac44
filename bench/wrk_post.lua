-- wrk script for aroutd benches: keep-alive POSTs of a small chat request.
-- Environment: BENCH_BODY (request body), BENCH_HEADERS ("Name: value" lines),
-- BENCH_MAX_REQUESTS (per thread; 0 = bounded by -d only).
-- done() prints one line "WRKJSON {...}" with counts, errors and latency percentiles (us).
-- wrk keeps running until -d even when a thread stops early, so the elapsed time of a
-- capped run is measured here with clock_gettime(CLOCK_MONOTONIC) through LuaJIT's ffi.

local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local function now_us()
  local ts = ffi.new("bench_timespec")
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000000 + tonumber(ts.tv_nsec) / 1000
end

wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or ""
wrk.headers["Content-Type"] = "application/json"
for line in string.gmatch(os.getenv("BENCH_HEADERS") or "", "[^\n]+") do
  local name, value = string.match(line, "^%s*([^:]+):%s*(.-)%s*$")
  if name then wrk.headers[name] = value end
end

local max_requests = tonumber(os.getenv("BENCH_MAX_REQUESTS") or "0") or 0
local threads = {}
seen = 0
start_us = 0
stop_us = 0

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  start_us = now_us()
end

function response(status, headers, body)
  seen = seen + 1
  if max_requests > 0 and seen >= max_requests and stop_us == 0 then
    stop_us = now_us()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local duration = summary.duration
  local first, last, capped = nil, 0, 0
  for _, thread in ipairs(threads) do
    local t0, t1 = thread:get("start_us"), thread:get("stop_us")
    if first == nil or t0 < first then first = t0 end
    if t1 > 0 then capped = capped + 1 end
    if t1 > last then last = t1 end
  end
  if capped == #threads and capped > 0 then duration = last - first end
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "capped": %s, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %.1f}}\n',
    summary.requests, duration, tostring(capped > 0), summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
