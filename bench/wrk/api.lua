-- Requests for bench/http_bench.py:  wrk -s bench/wrk/api.lua http://127.0.0.1:PORT
-- Settings come from the environment (BENCH_KIND ping|bare|issue|bulk|list, BENCH_PATH, BENCH_AUTH,
-- BENCH_CUSTOMERS, BENCH_TAG, BENCH_BODY, BENCH_REWARDS); "__CUSTOMER__" in the path or body is
-- replaced by a random customer id per request. Each issue/bulk reward carries a fresh requestId.
-- done() prints one line "BENCHJSON {...}" with the counts and latency percentiles (microseconds),
-- also at every point of benchsupport/slices.py's GRID ("grid").

local kind = os.getenv("BENCH_KIND")
local path = os.getenv("BENCH_PATH")
local auth = os.getenv("BENCH_AUTH")
local customers = tonumber(os.getenv("BENCH_CUSTOMERS"))
local tag = os.getenv("BENCH_TAG") or "t"
local body_template = os.getenv("BENCH_BODY") or ""
local rewards = {}
for id in string.gmatch(os.getenv("BENCH_REWARDS") or "", "%d+") do
  table.insert(rewards, id)
end

local get_headers = { ["Authorization"] = auth }
local post_headers = { ["Authorization"] = auth, ["Content-Type"] = "application/json" }

-- main state: the threads, for done()
local threads = {}
local next_id = 1
function setup(thread)
  thread:set("thread_id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

-- thread state
s2xx, s4xx, s5xx, first_error = 0, 0, 0, ""
local counter = 0

function init(args)
  math.randomseed(os.time() * 1000 + (thread_id or 0) * 7919)
  math.random(); math.random()
end

local function with_customer(text, c)
  return (string.gsub(text, "__CUSTOMER__", tostring(c)))
end

function request()
  counter = counter + 1
  local c = math.random(1, customers)
  local rid = tag .. "-" .. thread_id .. "-" .. counter
  if kind == "ping" then
    return wrk.format("GET", path, get_headers)
  elseif kind == "list" then
    return wrk.format("GET", with_customer(path, c), get_headers)
  elseif kind == "issue" then
    local body = string.format('{"mobile":"9%09d","brand":"BUKL","requestId":"%s"}', c, rid)
    return wrk.format("POST", path, post_headers, body)
  elseif kind == "bulk" then
    local items = {}
    for i, r in ipairs(rewards) do
      items[i] = '{"rewardId":' .. r .. ',"quantity":1,"requestId":"' .. rid .. "-" .. i .. '"}'
    end
    local body = string.format('{"mobile":"9%09d","brand":"BUKL","rewards":[%s]}', c, table.concat(items, ","))
    return wrk.format("POST", path, post_headers, body)
  elseif kind == "bare" then
    return wrk.format("POST", path, post_headers, with_customer(body_template, c))
  end
  error("unknown BENCH_KIND " .. tostring(kind))
end

function response(status, headers, body)
  if status < 300 then
    s2xx = s2xx + 1
  else
    if status < 500 then s4xx = s4xx + 1 else s5xx = s5xx + 1 end
    if first_error == "" then first_error = status .. " " .. string.sub(body or "", 1, 200) end
  end
end

function done(summary, latency, requests)
  local a, b, c, first = 0, 0, 0, ""
  for _, t in ipairs(threads) do
    a = a + t:get("s2xx"); b = b + t:get("s4xx"); c = c + t:get("s5xx")
    if first == "" then first = t:get("first_error") end
  end
  local e = summary.errors
  first = string.gsub(string.gsub(first, "\\", "\\\\"), '"', '\\"')
  -- Quantiles at benchsupport/slices.py's GRID, to merge short runs of one scenario.
  local grid = {latency.min}
  for p = 1, 99 do grid[#grid + 1] = latency:percentile(p) end
  for _, p in ipairs({99.5, 99.9}) do grid[#grid + 1] = latency:percentile(p) end
  grid[#grid + 1] = latency.max
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"p50":%d,"p95":%d,"p99":%d,"mean":%.1f,' ..
    '"s2xx":%d,"s4xx":%d,"s5xx":%d,"errors":%d,"first_error":"%s","grid":[%s]}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.mean, a, b, c, e.connect + e.read + e.write + e.timeout, first,
    table.concat(grid, ",")))
end
