-- wrk: the refresh_token grant, one never-used refresh token per request.
--   wrk ... -s identity-refresh.lua https://HOST/sas/TENANT/oauth2/token -- BASIC TOKEN_FILE THREADS
-- A refresh token is single use, and presenting a spent one revokes its whole family, so each
-- thread takes a disjoint slice of TOKEN_FILE (every THREADS-th line from its id) and sends
-- each token once. If a thread runs out it sends an invalid token instead (a 400, so the run is
-- reported invalid) and counts it in `extra`: make the file bigger or the run shorter.
label = "refresh"
dofile(string.match(debug.getinfo(1, "S").source, "^@(.-)[^/]*$") .. "identity-common.lua")

local headers, tokens, next_token = nil, {}, 1
extra = 0 -- requests sent after this thread's tokens ran out

function init(args)
   headers = {
      ["Authorization"] = "Basic " .. args[1],
      ["Content-Type"] = "application/x-www-form-urlencoded",
   }
   local threads, line = tonumber(args[3]), 0
   for token in io.lines(args[2]) do
      if line % threads == id then table.insert(tokens, token) end
      line = line + 1
   end
end

function request()
   local token = tokens[next_token]
   if token == nil then
      extra = extra + 1
      token = "exhausted"
   end
   next_token = next_token + 1
   return wrk.format("POST", nil, headers,
      "grant_type=refresh_token&refresh_token=" .. urlencode(token))
end
