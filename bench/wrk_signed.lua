-- Round-robin over a file of complete requests: "target<TAB>Name: value<TAB>..." per line
-- (header-signed requests, replayed as they were signed). Environment: BENCH_REQUESTS
-- (file), BENCH_METHOD, BENCH_BODY (bytes of body, 0 = none; every body is the same
-- bytes, so one signed payload hash fits all), BENCH_THREADS (wrk -t). Thread i takes
-- lines i, i+T, i+2T... done() prints one line starting with BENCHJSON, as wrk_urls.lua.
local counter = 0
local requests = {}
local idx = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

function init(args)
  local nthreads = tonumber(os.getenv("BENCH_THREADS"))
  local method = os.getenv("BENCH_METHOD")
  local size = tonumber(os.getenv("BENCH_BODY") or "0")
  local body = nil
  if size > 0 then body = string.rep("b", size) end
  local i = 0
  for line in io.lines(os.getenv("BENCH_REQUESTS")) do
    if i % nthreads == tid then
      local target = nil
      local headers = {}
      for field in string.gmatch(line, "[^\t]+") do
        if target == nil then
          target = field
        else
          local name, value = string.match(field, "^([^:]+): (.*)$")
          headers[name] = value
        end
      end
      requests[#requests + 1] = wrk.format(method, target, headers, body)
    end
    i = i + 1
  end
end

function request()
  idx = idx + 1
  if idx > #requests then idx = 1 end
  return requests[idx]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,"err_connect":%d,"err_read":%d,' ..
    '"err_write":%d,"err_status":%d,"err_timeout":%d,"p50_us":%d,"p90_us":%d,' ..
    '"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean))
end
