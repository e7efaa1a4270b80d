-- Shared by the bench scripts: per-thread status counting and one machine-readable result line.
--
-- wrk runs one Lua state per thread plus one for setup()/done(); tables are copied between them
-- with thread:set()/thread:get(). Each script calls bench_setup/bench_response/bench_done.

local M = {}
local threads = {}
local next_id = 0

function M.setup(thread)
   thread:set("tid", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

-- Request headers: Host must be set explicitly (VictoriaMetrics refuses requests without it, and
-- wrk only fills it in after its own init).
function M.headers(host, content_type, token)
   local h = { ["Host"] = host, ["Content-Type"] = content_type }
   if token ~= nil and token ~= "" and token ~= "-" then
      h["Authorization"] = "Bearer " .. token
   end
   return h
end

function M.count(statuses, status)
   statuses[status] = (statuses[status] or 0) + 1
end

local function json_table(t)
   local parts = {}
   for k, v in pairs(t) do
      table.insert(parts, string.format('"%s":%d', tostring(k), v))
   end
   return "{" .. table.concat(parts, ",") .. "}"
end

-- One line, "BENCH {json}", that bench/wrk.py parses; wrk's own text report is printed above it.
function M.done(summary, latency, extra_fields)
   local statuses = {}
   for _, thread in ipairs(threads) do
      local s = thread:get("statuses") or {}
      for k, v in pairs(s) do
         statuses[k] = (statuses[k] or 0) + v
      end
   end
   local e = summary.errors
   local fields = {
      string.format('"requests":%d', summary.requests),
      string.format('"duration_us":%d', summary.duration),
      string.format('"bytes":%d', summary.bytes),
      string.format('"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}',
                    e.connect, e.read, e.write, e.status, e.timeout),
      string.format('"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}',
                    latency:percentile(50), latency:percentile(90), latency:percentile(99),
                    latency.max, latency.mean),
      '"statuses":' .. json_table(statuses),
   }
   if extra_fields then
      table.insert(fields, extra_fields)
   end
   io.write("BENCH {" .. table.concat(fields, ",") .. "}\n")
end

return M
