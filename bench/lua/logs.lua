-- Log batch ingestion: POST /logs/batch, RECORDS records a request, each with its own epoch-ms
-- timestamp (thread N writes from BASE_MS + N hours, one ms apart), so no two requests repeat a
-- timestamp and the stored count can be checked against what was sent.
--
--   wrk -t2 -c4 -d10s -s bench/lua/logs.lua http://127.0.0.1:PORT -- RECORDS BASE_MS [TOKEN]
--
-- Messages rotate over a few realistic templates; the record templates are built once in init().

package.path = debug.getinfo(1, "S").source:match("^@(.*/)") .. "?.lua;" .. package.path
local common = require("common")

local THREAD_SPAN_MS = 3600 * 1000
local LEVELS = { "info", "info", "info", "debug", "warn", "error" }
local MESSAGES = {
   "GET /api/v1/orders/%d 200 12 ms",
   "database error: query on payments failed after %d ms (deadlock detected)",
   "user %d logged in from 10.0.3.7",
   "cache miss for sessions:%d, loading from origin",
   "job inventory-sync finished: %d rows processed",
}

setup = common.setup

local records, base_ms, headers
local pre = {}
local parts = {}
local seq = 0
statuses = {}

function init(args)
   records = tonumber(args[1] or "1000")
   base_ms = tonumber(args[2]) + tid * THREAD_SPAN_MS
   local host = wrk.thread.addr and tostring(wrk.thread.addr) or "127.0.0.1"
   headers = common.headers(host, "application/json", args[3])
   for i = 1, records do
      local msg = string.format(MESSAGES[(i % #MESSAGES) + 1], i)
      pre[i] = string.format('{"level":"%s","service":"svc-%d","message":"%s","labels":{"host":"host-%d"},'
                             .. '"timestamp":', LEVELS[(i % #LEVELS) + 1], i % 20, msg, i % 8)
   end
end

request = function()
   local t0 = base_ms + seq * records
   seq = seq + 1
   parts[1] = '{"logs":['
   local k = 1
   for i = 1, records do
      parts[k + 1] = pre[i]
      parts[k + 2] = tostring(t0 + i - 1)
      parts[k + 3] = (i < records) and "}," or "}"
      k = k + 3
   end
   parts[k + 1] = "]}"
   return wrk.format("POST", "/logs/batch", headers, table.concat(parts, "", 1, k + 1))
end

response = function(status, hdrs, body)
   common.count(statuses, status)
end

done = function(summary, latency, requests)
   common.done(summary, latency)
end
