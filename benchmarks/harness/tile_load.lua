-- wrk script of benchmarks/harness/load.py: replay the request paths listed in $URLS_FILE.
-- With T threads ($WRK_THREADS), thread t takes lines t, t+T, t+2T, ... so that every line is
-- sent once per pass; the connections of a thread share its cursor. When a thread's lines run
-- out it starts again and counts a wrap (a cold run that wraps is not cold any more).
-- $URLS_SPLIT set: the harness wrote thread t's lines to $URLS_FILE.t already (64 threads reading
-- a 100,000-line list each would spend the run's first second on it).
-- At the end one line "WRK_RESULT {json}" is printed for load.py.
--
-- $LATENCIES_FILE set (one connection per thread, -t equal to -c): each request's own latency,
-- as the time between the thread's consecutive request() calls (wrk calls request() in the loop
-- iteration after a response is complete, just before writing the next). wrk's own percentiles
-- are corrected for coordinated omission (its stats_correct adds, for every response slower than
-- a connection's mean interval, made-up samples at that interval below it), so a 400 ms download
-- counts ~50 times at c=8; these are each request once. done() writes "thread cursor microseconds"
-- lines there (cursor: the position in the thread's lines, 1-based; the last request is not timed).
--
-- $RATE_PER_THREAD set too (requests/s): open loop. Each thread sends at exponential intervals of
-- that mean (a Poisson stream; the threads' sum is the run's rate, whatever the server does) and
-- times each request from its scheduled moment to its response's end (wrk calls delay() right
-- after a response): a request scheduled while the previous one is still out is sent late, and
-- its wait counts, as a visitor's would (coordinated omission corrected as wrk2 does). A request
-- sent on time (delay() is in whole milliseconds) is timed from its sending.
local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } tile_load_timespec;
  int clock_gettime(int clock_id, tile_load_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local clock = ffi.new("tile_load_timespec")

local function now_us()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, clock)
  return tonumber(clock.tv_sec) * 1000000 + tonumber(clock.tv_nsec) / 1000
end

local all_threads = {}

function setup(thread)
  thread:set("index", #all_threads)
  table.insert(all_threads, thread)
end

function init(args)
  local stride = tonumber(os.getenv("WRK_THREADS") or "1")
  local split = os.getenv("URLS_SPLIT")
  paths = {}
  if split then
    for line in io.lines(os.getenv("URLS_FILE") .. "." .. index) do
      paths[#paths + 1] = line
    end
  else
    local line_no = 0
    for line in io.lines(os.getenv("URLS_FILE")) do
      if line_no % stride == index then
        paths[#paths + 1] = line
      end
      line_no = line_no + 1
    end
  end
  cursor = 0
  wraps = 0
  timed = os.getenv("LATENCIES_FILE") ~= nil
  latencies = {} -- cursor, microseconds, cursor, microseconds, ...
  last_start = nil
  math.randomseed(1000 + index)
end

local rate = tonumber(os.getenv("RATE_PER_THREAD") or "")
local scheduled, sent -- open loop: the current request's moment in the schedule, and its sending

local function next_gap_us()
  return -math.log(1 - math.random()) / rate * 1000000
end

if rate then
  function delay()
    if not sent then -- before a connection's first request (wrk asks on connecting too)
      return 0
    end
    local now = now_us()
    local from = sent - scheduled <= 1500 and sent or scheduled
    latencies[#latencies + 1] = cursor
    latencies[#latencies + 1] = math.floor(now - from)
    sent = nil
    scheduled = scheduled + next_gap_us()
    local wait_ms = (scheduled - now) / 1000
    return wait_ms > 0 and math.ceil(wait_ms) or 0
  end
end

function request()
  if rate then
    sent = now_us()
    scheduled = scheduled or sent -- the schedule starts at the first request
  elseif timed then
    local now = now_us()
    if last_start then
      latencies[#latencies + 1] = cursor
      latencies[#latencies + 1] = math.floor(now - last_start)
    end
    last_start = now
  end
  cursor = cursor + 1
  if cursor > #paths then
    cursor = 1
    wraps = wraps + 1
  end
  return wrk.format("GET", paths[cursor])
end

-- The sum over the threads of a number each thread keeps in global ``name``.
function thread_sum(name)
  local total = 0
  for _, thread in ipairs(all_threads) do
    total = total + (thread:get(name) or 0)
  end
  return total
end

-- The fields of the WRK_RESULT line (soak_load.lua adds its own to them).
function result_fields(summary, latency)
  local wrapped = thread_sum("wraps")
  local errors = summary.errors
  return {
    string.format('"requests":%d', summary.requests),
    string.format('"duration_us":%d', summary.duration),
    string.format('"bytes":%d', summary.bytes),
    string.format('"err_connect":%d', errors.connect),
    string.format('"err_read":%d', errors.read),
    string.format('"err_write":%d', errors.write),
    string.format('"err_status":%d', errors.status),
    string.format('"err_timeout":%d', errors.timeout),
    string.format('"lat_mean_us":%.1f', latency.mean),
    string.format('"lat_max_us":%d', latency.max),
    string.format('"lat_p50_us":%d', latency:percentile(50)),
    string.format('"lat_p90_us":%d', latency:percentile(90)),
    string.format('"lat_p99_us":%d', latency:percentile(99)),
    string.format('"wraps":%d', wrapped),
  }
end

function done(summary, latency, requests)
  local out_name = os.getenv("LATENCIES_FILE")
  if out_name then
    local out = assert(io.open(out_name, "w"))
    for t, thread in ipairs(all_threads) do
      local values = thread:get("latencies") or {}
      for i = 1, #values - 1, 2 do
        out:write(t - 1, " ", values[i], " ", values[i + 1], "\n")
      end
    end
    out:close()
  end
  io.write("WRK_RESULT {" .. table.concat(result_fields(summary, latency), ",") .. "}\n")
end
