-- wrk script: counts 200 / 503 / 504 / other answers and prints them with p50/p99 (docs/benchmarks.md, "Hot path").
-- usage: wrk -c32 -t2 -d10s --timeout 5s -s bench/wrk-status-codes.lua <url>
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) c200 = 0; c503 = 0; c504 = 0; cother = 0 end
function response(status, headers, body)
  if status == 200 then c200 = c200 + 1 elseif status == 503 then c503 = c503 + 1 elseif status == 504 then c504 = c504 + 1 else cother = cother + 1 end
end
function done(summary, latency, requests)
  local a, b, c, d = 0, 0, 0, 0
  for _, t in ipairs(threads) do a = a + t:get("c200"); b = b + t:get("c503"); c = c + t:get("c504"); d = d + t:get("cother") end
  io.write(string.format("status 200=%d 503=%d 504=%d other=%d; timeouts=%d; p50=%.1fms p99=%.1fms\n", a, b, c, d, summary.errors.timeout, latency:percentile(50)/1000, latency:percentile(99)/1000))
end
