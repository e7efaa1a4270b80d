-- Rotate pre-built request bodies (one file each, listed in a manifest) so every request differs.
-- wrk -s rotate.lua URL -- MANIFEST PATH CONTENT_TYPE CONTENT_ENCODING AUTHORIZATION HOST
-- ("-" for an absent header). Headers are built in init(): VictoriaMetrics refuses requests
-- without a Host header.
local bodies = {}
local idx = 0
local path, headers

init = function(args)
  for name in io.lines(args[1]) do
    local f = assert(io.open(name, "rb"))
    bodies[#bodies + 1] = f:read("*all")
    f:close()
  end
  path = args[2]
  headers = { ["Host"] = args[6], ["Content-Type"] = args[3] }
  if args[4] ~= "-" then headers["Content-Encoding"] = args[4] end
  if args[5] ~= "-" then headers["Authorization"] = args[5] end
  idx = math.random(#bodies)
end

request = function()
  idx = idx % #bodies + 1
  return wrk.format("POST", path, headers, bodies[idx])
end
