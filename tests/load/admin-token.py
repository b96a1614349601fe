#!/usr/bin/env python3
"""Prints an administrator's access token, got the way the admin console gets one: the built-in
browser client (`openframe-gateway`, public, PKCE S256) through the real sign-in form and the
code exchange. For load scripts that call `/api` (tests/load/graphql.sh).

    admin-token.py --base https://127.0.0.1:PORT --tenant bench --email E --password P

The appliance's `server.public_url` must be --base (the client's redirect URI is built from it).
Standard library only; it reuses identity-tokens.py's HTTP and form helpers.
"""

import argparse
import importlib.util
import json
import pathlib
import urllib.parse

spec = importlib.util.spec_from_file_location(
    "identity_tokens", pathlib.Path(__file__).with_name("identity-tokens.py")
)
helpers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(helpers)

CLIENT_ID = "openframe-gateway"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True)
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--email", required=True)
    parser.add_argument("--password", required=True)
    args = parser.parse_args()
    args.client_id = CLIENT_ID
    helpers.REDIRECT_URI = args.base + "/oauth/callback"

    session = helpers.sign_in(args)
    appliance = helpers.Appliance(args.base)
    response, body = appliance.request(
        "GET",
        helpers.authorize_path(args.tenant, CLIENT_ID),
        headers={"Cookie": f"of_sas_session_{args.tenant}={session}"},
    )
    location = response.headers.get("Location", "")
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query).get("code")
    if response.status != 302 or not code:
        raise SystemExit(f"authorize answered {response.status} {location!r} {body[:300]}")
    response, body = appliance.request(
        "POST",
        f"/sas/{args.tenant}/oauth2/token",
        body={
            "grant_type": "authorization_code",
            "code": code[0],
            "redirect_uri": helpers.REDIRECT_URI,
            "client_id": CLIENT_ID,
            "code_verifier": helpers.VERIFIER,
        },
    )
    if response.status != 200:
        raise SystemExit(f"the code exchange answered {response.status}: {body[:300]}")
    print(json.loads(body)["access_token"])


if __name__ == "__main__":
    main()
