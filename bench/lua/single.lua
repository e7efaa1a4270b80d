-- One point per request (POST /metrics), no timestamp (the server's clock), rotating over 100
-- series. The bodies are built once in init() (after wrk knows the host) and reused.
--
--   wrk -t2 -c32 -d12s --latency -s bench/lua/single.lua http://127.0.0.1:PORT -- [TOKEN]

package.path = debug.getinfo(1, "S").source:match("^@(.*/)") .. "?.lua;" .. package.path
local common = require("common")

setup = common.setup

local reqs = {}
local n = 0
statuses = {}

function init(args)
   local host = wrk.thread.addr and tostring(wrk.thread.addr) or "127.0.0.1"
   local headers = common.headers(host, "application/json", args[1])
   for i = 1, 100 do
      local body = string.format(
         '{"name":"bench_single","value":%d.5,"labels":{"host":"host-%02d","series":"s%03d"}}', i, i % 10, i)
      reqs[i] = wrk.format("POST", "/metrics", headers, body)
   end
end

request = function()
   n = n % #reqs + 1
   return reqs[n]
end

response = function(status, hdrs, body)
   common.count(statuses, status)
end

done = function(summary, latency, requests)
   common.done(summary, latency)
end
