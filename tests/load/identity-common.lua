-- Shared by the identity-*.lua wrk scripts (loaded with dofile; wrk runs one copy per thread and
-- one in the main state). Counts every answer that is not a 200 (wrk's own "Non-2xx or 3xx"
-- counter only sees statuses above 399, and a 3xx here is just as wrong), keeps one sample of
-- what went wrong, and ends with a single RESULT line that identity.sh parses:
--   RESULT <label> <requests/s> <p50 ms> <p99 ms> <non-200> <socket errors> <requests> <extra>

local threads = {}

function setup(thread)
   -- Threads are numbered from 0 in creation order; identity-refresh.lua slices its tokens by it.
   thread:set("id", #threads)
   table.insert(threads, thread)
end

-- Per-thread globals, read back from the main state in done().
not_ok = 0
not_ok_sample = ""

function response(status, headers, body)
   if status ~= 200 then
      not_ok = not_ok + 1
      if not_ok_sample == "" then
         not_ok_sample = status .. " " .. string.sub(body or "", 1, 200)
      end
   end
end

-- Form-urlencodes a value (RFC 3986 unreserved characters stay as they are).
function urlencode(value)
   return (string.gsub(value, "[^%w%-%._~]", function(c)
      return string.format("%%%02X", string.byte(c))
   end))
end

function done(summary, latency, requests)
   local total, sample, extra = 0, "", 0
   for _, thread in ipairs(threads) do
      total = total + thread:get("not_ok")
      if sample == "" then sample = thread:get("not_ok_sample") end
      -- Scripts may count something else worth failing the run for (refresh: tokens run out).
      extra = extra + (thread:get("extra") or 0)
   end
   local errors = summary.errors
   local socket = errors.connect + errors.read + errors.write + errors.timeout
   if sample ~= "" then
      io.write("first non-200 answer: " .. sample .. "\n")
   end
   io.write(string.format("RESULT %s %.1f %.1f %.1f %d %d %d %d\n",
      label, summary.requests / (summary.duration / 1e6),
      latency:percentile(50) / 1000, latency:percentile(99) / 1000,
      total, socket, summary.requests, extra))
end
