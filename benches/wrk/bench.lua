-- wrk script for the Portcullis benchmark (driven by `benches/run`; not meant to be run by hand).
--
-- Arguments after `--`: REQUESTS_FILE EXPECT
--   REQUESTS_FILE  one request per line: METHOD<TAB>PATH<TAB>COOKIE<TAB>BODY (cookie/body may
--                  be empty). Requests are pre-built in init() and rotated, so every virtual
--                  client cycles through the session cookies without per-request Lua work.
--   EXPECT         the status that counts as a success: "200", "403", or a class like "3xx".
-- Prints one line "BENCH_JSON {...}" with counts, latency percentiles and the latency
-- distribution (microseconds).

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local file, expect = args[1], args[2]
  if expect:sub(2) == "xx" then
    lo = tonumber(expect:sub(1, 1)) * 100
    hi = lo + 99
  else
    lo = tonumber(expect)
    hi = lo
  end
  reqs = {}
  for line in io.lines(file) do
    local method, path, cookie, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t?(.*)$")
    local headers = { ["Accept"] = "text/html" }
    if cookie ~= "" then headers["Cookie"] = cookie end
    if body == "" then
      body = nil
    else
      headers["Content-Type"] = "application/x-www-form-urlencoded"
    end
    table.insert(reqs, wrk.format(method, path, headers, body))
  end
  -- Threads start at different points of the rotation.
  i = math.random(#reqs)
  ok, bad = 0, 0
  unexpected = ""
  counts = {}
end

function request()
  i = i % #reqs + 1
  return reqs[i]
end

function response(status, headers, body)
  if status >= lo and status <= hi then
    ok = ok + 1
  else
    bad = bad + 1
    counts[status] = (counts[status] or 0) + 1
    local parts = {}
    for s, n in pairs(counts) do table.insert(parts, s .. ":" .. n) end
    unexpected = table.concat(parts, ",")
  end
end

function done(summary, latency, requests)
  local total_ok, total_bad, statuses = 0, 0, {}
  for _, t in ipairs(threads) do
    total_ok = total_ok + (t:get("ok") or 0)
    total_bad = total_bad + (t:get("bad") or 0)
    local u = t:get("unexpected") or ""
    if u ~= "" then table.insert(statuses, u) end
  end
  local e = summary.errors
  -- The whole latency distribution (value in µs, count), so runs can be pooled.
  local dist = {}
  for i = 1, #latency do
    local value, count = latency(i)
    dist[#dist + 1] = string.format("%d,%d", value, count)
  end
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"ok":%d,"unexpected":%d,' ..
    '"unexpected_statuses":"%s","connect_errors":%d,"read_errors":%d,"write_errors":%d,' ..
    '"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%.1f,' ..
    '"dist":[%s]}\n',
    summary.requests, summary.duration, summary.bytes, total_ok, total_bad,
    table.concat(statuses, ";"), e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean, table.concat(dist, ",")))
end
