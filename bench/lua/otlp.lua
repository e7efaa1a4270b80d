-- OTLP/HTTP trace ingestion: POST /v1/traces with protobuf ExportTraceServiceRequest bodies built
-- by bench/logs_traces.py (DIR/body-0.pb .. DIR/body-(COUNT-1).pb), read once in init() and
-- rotated per request; each thread starts at a different body. Bodies repeat after COUNT requests,
-- and the bench makes more than a run sends: start times advance as an application's would.
--
--   wrk -t2 -c4 -d10s -s bench/lua/otlp.lua http://127.0.0.1:PORT -- DIR COUNT [TOKEN]

package.path = debug.getinfo(1, "S").source:match("^@(.*/)") .. "?.lua;" .. package.path
local common = require("common")

setup = common.setup

local bodies = {}
local headers
local seq = 0
statuses = {}

function init(args)
   local dir, count = args[1], tonumber(args[2] or "1")
   local host = wrk.thread.addr and tostring(wrk.thread.addr) or "127.0.0.1"
   headers = common.headers(host, "application/x-protobuf", args[3])
   for i = 0, count - 1 do
      local f = assert(io.open(string.format("%s/body-%d.pb", dir, i), "rb"))
      bodies[i + 1] = f:read("*a")
      f:close()
   end
   seq = tid * math.floor(count / 2)
end

request = function()
   local body = bodies[(seq % #bodies) + 1]
   seq = seq + 1
   return wrk.format("POST", "/v1/traces", headers, body)
end

response = function(status, hdrs, body)
   common.count(statuses, status)
end

done = function(summary, latency, requests)
   common.done(summary, latency)
end
