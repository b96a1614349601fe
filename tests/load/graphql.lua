-- wrk: one GraphQL POST, repeated.
--   WRK_LABEL=name wrk ... -s graphql.lua https://HOST/api/graphql -- TOKEN BODY_FILE
-- BODY_FILE holds the JSON request ({"query": …, "variables": …}); graphql.sh checked that it
-- answers without errors before the run. No response() callback (see gateway.lua for why).
label = os.getenv("WRK_LABEL") or "graphql"

local request_text

function init(args)
   local file = assert(io.open(args[2], "r"))
   local body = file:read("*a")
   file:close()
   request_text = wrk.format("POST", nil, {
      ["Authorization"] = "Bearer " .. args[1],
      ["Content-Type"] = "application/json",
   }, body)
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
