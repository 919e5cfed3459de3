-- wrk script of benchmarks/harness/load.py: replay the request paths listed in $URLS_FILE.
-- With T threads ($WRK_THREADS), thread t takes lines t, t+T, t+2T, ... so that every line is
-- sent once per pass; the connections of a thread share its cursor. When a thread's lines run
-- out it starts again and counts a wrap (a cold run that wraps is not cold any more).
-- At the end one line "WRK_RESULT {json}" is printed for load.py.
local all_threads = {}

function setup(thread)
  thread:set("index", #all_threads)
  table.insert(all_threads, thread)
end

function init(args)
  local stride = tonumber(os.getenv("WRK_THREADS") or "1")
  paths = {}
  local line_no = 0
  for line in io.lines(os.getenv("URLS_FILE")) do
    if line_no % stride == index then
      paths[#paths + 1] = line
    end
    line_no = line_no + 1
  end
  cursor = 0
  wraps = 0
end

function request()
  cursor = cursor + 1
  if cursor > #paths then
    cursor = 1
    wraps = wraps + 1
  end
  return wrk.format("GET", paths[cursor])
end

function done(summary, latency, requests)
  local wrapped = 0
  for _, thread in ipairs(all_threads) do
    wrapped = wrapped + (thread:get("wraps") or 0)
  end
  local errors = summary.errors
  local fields = {
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
  io.write("WRK_RESULT {" .. table.concat(fields, ",") .. "}\n")
end
