-- wrk: one GET with a fixed header (or none).
--   WRK_LABEL=name wrk ... -s gateway.lua https://HOST/PATH -- [HEADER VALUE]
-- HEADER/VALUE (e.g. Authorization "Bearer …", X-API-Key ak_….sk_…) go with every request. The
-- label comes from the environment because done() runs in wrk's main state, which init() never
-- sees.
--
-- Unlike the identity scripts, this one defines no response() callback: with one, wrk copies
-- every header and body of every answer into Lua, and that cost (shared with the server on two
-- cores) grows with the answer's header count, so the rate-limit headers of the API-key route
-- would be charged to authentication. Wrong answers are counted from wrk's own status counter
-- (statuses from 400 up); gateway.sh checks each path answers 200 before it runs wrk, and none
-- of these routes redirects.
label = os.getenv("WRK_LABEL") or "gateway"

local request_text

function init(args)
   local headers = {}
   if args[1] then
      headers[args[1]] = args[2]
   end
   request_text = wrk.format("GET", nil, headers, nil)
end

function request()
   return request_text
end

-- The RESULT line lib.sh parses:
--   RESULT <label> <requests/s> <p50 ms> <p99 ms> <non-200> <socket errors> <requests> <extra>
function done(summary, latency, requests)
   local errors = summary.errors
   local socket = errors.connect + errors.read + errors.write + errors.timeout
   io.write(string.format("RESULT %s %.1f %.1f %.1f %d %d %d 0\n",
      label, summary.requests / (summary.duration / 1e6),
      latency:percentile(50) / 1000, latency:percentile(99) / 1000,
      errors.status, socket, summary.requests))
end
