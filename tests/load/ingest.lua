-- wrk: POST /ingest/v1/debezium with BATCH new MeshCentral events per request (NDJSON), every
-- event unique (thread and counter in its id), timestamped now.
--   wrk ... -s ingest.lua https://HOST/ingest/v1/debezium -- LABEL API_KEY BATCH
-- Every answer must be a 200 saying all BATCH events were accepted; anything else is counted and
-- fails the run. Ends with the RESULT line of identity-common.lua (requests/s, not events/s).
dofile(string.match(debug.getinfo(1, "S").source, "^@(.-)[^/]*$") .. "identity-common.lua")

-- The label is read in every Lua state: done() runs where init() never did.
label = os.getenv("LABEL") or "ingest"

local api_key, batch, expected
local counter = 0

function init(args)
   api_key = args[2]
   batch = tonumber(args[3])
   expected = '"accepted":' .. batch .. ','
end

-- One MeshCentral login as Debezium's MongoDB connector sends it: `after` is a JSON string.
local function event(id, millis)
   return '{"before":null,"after":"{\\"_id\\":{\\"$oid\\":\\"' .. id ..
      '\\"},\\"etype\\":\\"user\\",\\"action\\":\\"login\\",\\"userid\\":\\"user//admin\\",' ..
      '\\"username\\":\\"admin\\",\\"domain\\":\\"\\",\\"msg\\":\\"Account login ' .. id ..
      '\\",\\"time\\":{\\"$date\\":' .. millis .. '}}","source":{"version":"2.7.3.Final",' ..
      '"connector":"mongodb","name":"meshcentral","db":"meshcentral","collection":"events"},' ..
      '"op":"c","ts_ms":' .. millis .. '}\n'
end

-- DELAY_MS paces each connection (wrk's delay hook), for a steady offered rate rather than the
-- most the server can take.
local pause = tonumber(os.getenv("DELAY_MS") or "0")
if pause > 0 then
   function delay()
      return pause
   end
end

function request()
   local millis = os.time() * 1000
   local lines = {}
   for i = 1, batch do
      counter = counter + 1
      lines[i] = event("w" .. id .. "-" .. counter, millis)
   end
   return wrk.format("POST", nil, {
      ["X-API-Key"] = api_key,
      ["message-type"] = "MESHCENTRAL_EVENT",
      ["Content-Type"] = "application/x-ndjson",
   }, table.concat(lines))
end

-- A 200 that did not accept every event is as wrong as an error status.
function response(status, headers, body)
   if status ~= 200 or not string.find(body, expected, 1, true) then
      not_ok = not_ok + 1
      if not_ok_sample == "" then
         not_ok_sample = status .. " " .. string.sub(body or "", 1, 200)
      end
   end
end
