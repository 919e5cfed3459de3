-- wrk script of benchmarks/soak.py: tile_load.lua ($TILE_LOAD_LUA: the list replayed, thread-strided,
-- wraps counted), and also the responses counted by status class, so a soak can say how many
-- 5xx it saw. One "WRK_RESULT {json}" line at the end, tile_load.lua's fields and these.
dofile(os.getenv("TILE_LOAD_LUA"))

local replay_init = init

function init(args)
  replay_init(args)
  s2, s3, s4, s5 = 0, 0, 0, 0
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
  local fields = result_fields(summary, latency)
  for _, class in ipairs({ "2", "3", "4", "5" }) do
    fields[#fields + 1] = string.format('"status_%sxx":%d', class, thread_sum("s" .. class))
  end
  io.write("WRK_RESULT {" .. table.concat(fields, ",") .. "}\n")
end
