-- wrk: the client_credentials grant, client authenticated with HTTP Basic.
--   wrk ... -s identity-client-credentials.lua https://HOST/sas/TENANT/oauth2/token -- BASIC
-- BASIC is base64("client_id:client_secret"), made by identity.sh (Lua has no base64).
label = "client_credentials"
dofile(string.match(debug.getinfo(1, "S").source, "^@(.-)[^/]*$") .. "identity-common.lua")

local request_text

function init(args)
   -- Every request is the same, so it is formatted once per thread.
   request_text = wrk.format("POST", nil, {
      ["Authorization"] = "Basic " .. args[1],
      ["Content-Type"] = "application/x-www-form-urlencoded",
   }, "grant_type=client_credentials")
end

function request()
   return request_text
end
