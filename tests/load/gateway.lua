-- wrk: one GET with a fixed header (or none), counted like the identity scripts.
--   WRK_LABEL=name wrk ... -s gateway.lua https://HOST/PATH -- [HEADER VALUE]
-- HEADER/VALUE (e.g. Authorization "Bearer …", X-API-Key ak_….sk_…) go with every request. The
-- label comes from the environment because done() runs in wrk's main state, which init() never
-- sees.
label = os.getenv("WRK_LABEL") or "gateway"
dofile(string.match(debug.getinfo(1, "S").source, "^@(.-)[^/]*$") .. "identity-common.lua")

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
