-- wrk: password sign-ins through the login form (argon2id verification on every request).
--   wrk ... -s identity-login.lua https://HOST/sas/TENANT/login -- EMAIL PASSWORD CSRF_TOKEN CSRF_COOKIE
-- The form's _csrf token is a MAC over the of_csrf cookie's nonce, with no expiry, so one pair
-- fetched beforehand serves every request. No `return` field: a correct sign-in then answers
-- 200 "You are signed in" (with one, it would be a 303). Every sign-in must be correct: failed
-- ones are throttled after 5 per account, and would turn the run into a measure of 429s.
label = "login"
dofile(string.match(debug.getinfo(1, "S").source, "^@(.-)[^/]*$") .. "identity-common.lua")

local request_text

function init(args)
   request_text = wrk.format("POST", nil, {
      ["Content-Type"] = "application/x-www-form-urlencoded",
      ["Cookie"] = "of_csrf=" .. args[4],
   }, "username=" .. urlencode(args[1]) .. "&password=" .. urlencode(args[2])
      .. "&_csrf=" .. urlencode(args[3]))
end

function request()
   return request_text
end
