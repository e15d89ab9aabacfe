-- Round-robin over a file of requests, one per line: a target ("/bucket/key?X-Amz-...")
-- optionally followed by TAB-separated "Name: value" headers (header-signed requests,
-- replayed as they were signed). Environment: BENCH_URLS (file), BENCH_METHOD, BENCH_BODY
-- (bytes of body, 0 = none; every body is the same bytes, so one signed payload hash fits
-- all), BENCH_THREADS (wrk -t). Thread i takes lines i, i+T, i+2T... so threads never
-- share a key. Requests are formatted as they are sent: a 60,000-key PUT list formatted
-- up front with its bodies would hold 240 MB. done() prints one machine-readable line
-- starting with BENCHJSON.
local counter = 0
local targets = {}
local headers = {}
local idx = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

function init(args)
  local nthreads = tonumber(os.getenv("BENCH_THREADS"))
  wrk.method = os.getenv("BENCH_METHOD")
  local size = tonumber(os.getenv("BENCH_BODY") or "0")
  if size > 0 then wrk.body = string.rep("b", size) else wrk.body = nil end
  local i = 0
  for line in io.lines(os.getenv("BENCH_URLS")) do
    if i % nthreads == tid then
      local target = nil
      local fields = {}
      for field in string.gmatch(line, "[^\t]+") do
        if target == nil then
          target = field
        else
          local name, value = string.match(field, "^([^:]+): (.*)$")
          fields[name] = value
        end
      end
      targets[#targets + 1] = target
      headers[#headers + 1] = fields
    end
    i = i + 1
  end
end

function request()
  idx = idx + 1
  if idx > #targets then idx = 1 end
  return wrk.format(nil, targets[idx], headers[idx])
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
