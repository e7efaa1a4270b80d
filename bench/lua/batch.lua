-- Batch ingestion: every request carries SERIES x PER_SERIES points with timestamps no request
-- repeats, so the server stores every point (last-write-wins stores would otherwise collapse
-- rotated bodies) and the stored count can be checked against what was sent.
--
--   wrk -t2 -c4 -d12s -s bench/lua/batch.lua http://127.0.0.1:PORT -- FORMAT SERIES PER_SERIES BASE_MS [TOKEN]
--
-- FORMAT: "json" (airisd POST /metrics/batch) or "influx" (line protocol, POST /write?precision=ms).
-- BASE_MS: epoch ms of the first timestamp; thread N writes from BASE_MS + N hours, one ms apart.
-- The series templates are built once in init(); each request only splices in its timestamps.

package.path = debug.getinfo(1, "S").source:match("^@(.*/)") .. "?.lua;" .. package.path
local common = require("common")

local THREAD_SPAN_MS = 3600 * 1000

setup = common.setup

local fmt, series, per_series, base_ms, path, headers
local pre, sep, last, head, tail
local parts = {}
local seq = 0
statuses = {}

function init(args)
   fmt = args[1] or "json"
   series = tonumber(args[2] or "100")
   per_series = tonumber(args[3] or "10")
   base_ms = tonumber(args[4]) + tid * THREAD_SPAN_MS
   local host = wrk.thread.addr and tostring(wrk.thread.addr) or "127.0.0.1"
   pre = {}
   if fmt == "json" then
      path = "/metrics/batch"
      headers = common.headers(host, "application/json", args[5])
      head, tail, sep, last = '{"metrics":[', "]}", "},", "}"
      for i = 1, series do
         pre[i] = string.format(
            '{"name":"bench_metric","value":%d.25,"labels":{"host":"host-%02d","series":"s%03d"},"timestamp":',
            i, i % 10, i)
      end
   elseif fmt == "influx" then
      path = "/write?precision=ms"
      headers = common.headers(host, "text/plain", args[5])
      head, tail, sep, last = "", "", "\n", "\n"
      for i = 1, series do
         -- measurement "bench", field "metric": VictoriaMetrics names the series bench_metric
         pre[i] = string.format("bench,host=host-%02d,series=s%03d metric=%d.25 ", i % 10, i, i)
      end
   else
      error("FORMAT must be json or influx, got " .. tostring(fmt))
   end
end

request = function()
   local t0 = base_ms + seq * per_series
   seq = seq + 1
   local k = 1
   parts[1] = head
   for j = 0, per_series - 1 do
      local ts = tostring(t0 + j)
      for i = 1, series do
         parts[k + 1] = pre[i]
         parts[k + 2] = ts
         parts[k + 3] = sep
         k = k + 3
      end
   end
   parts[k] = last
   parts[k + 1] = tail
   return wrk.format("POST", path, headers, table.concat(parts, "", 1, k + 1))
end

response = function(status, hdrs, body)
   common.count(statuses, status)
end

done = function(summary, latency, requests)
   common.done(summary, latency)
end
