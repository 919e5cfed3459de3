-- wrk script of benchmarks/soak.py: replay the request paths listed in $URLS_FILE, as
-- tile_load.lua does (thread-strided lines, wraps counted), and also count the responses by
-- status class, so a soak can say how many 5xx it saw. One "WRK_RESULT {json}" line at the end.
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
  s2, s3, s4, s5 = 0, 0, 0, 0
end

function request()
  cursor = cursor + 1
  if cursor > #paths then
    cursor = 1
    wraps = wraps + 1
  end
  return wrk.format("GET", paths[cursor])
end

function response(status, headers, body)
  if status >= 500 then
    s5 = s5 + 1
  elseif status >= 400 then
    s4 = s4 + 1
  elseif status >= 300 then
    s3 = s3 + 1
  else
    s2 = s2 + 1
  end
end

function done(summary, latency, requests)
  local wrapped, c2, c3, c4, c5 = 0, 0, 0, 0, 0
  for _, thread in ipairs(all_threads) do
    wrapped = wrapped + (thread:get("wraps") or 0)
    c2 = c2 + (thread:get("s2") or 0)
    c3 = c3 + (thread:get("s3") or 0)
    c4 = c4 + (thread:get("s4") or 0)
    c5 = c5 + (thread:get("s5") or 0)
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
    string.format('"status_2xx":%d', c2),
    string.format('"status_3xx":%d', c3),
    string.format('"status_4xx":%d', c4),
    string.format('"status_5xx":%d', c5),
  }
  io.write("WRK_RESULT {" .. table.concat(fields, ",") .. "}\n")
end
