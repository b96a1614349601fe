#!/usr/bin/env python3
"""Mints distinct refresh tokens for the refresh-grant benchmark (tests/load/identity.sh).

Each token starts its own family: authorization code + PKCE (S256) through the real sign-in
form, then the code exchange. Refresh tokens are single use and a spent one presented again
revokes its family, so the benchmark needs one fresh token per request.

    identity-tokens.py --base https://127.0.0.1:PORT --tenant bench --client-id ID \
        --client-secret SECRET --email E --password P --count 20000 --out tokens.txt

Standard library only. Certificate checks are off: the appliance serves a self-signed cert.
"""

import argparse
import base64
import hashlib
import html.parser
import http.client
import json
import ssl
import sys
import threading
import time
import urllib.parse

REDIRECT_URI = "https://bench.example/cb"
# One PKCE pair serves every code: each code is single use anyway, and the verifier only
# has to match the challenge sent with that code.
VERIFIER = "bench-verifier-" + "x" * 40
CHALLENGE = (
    base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()
)


class Appliance:
    """One keep-alive HTTPS connection (a thread's own: http.client is not thread safe)."""

    def __init__(self, base):
        url = urllib.parse.urlsplit(base)
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        self.connection = http.client.HTTPSConnection(url.hostname, url.port, context=context)

    def request(self, method, path, body=None, headers=None):
        headers = dict(headers or {})
        if body is not None:
            body = urllib.parse.urlencode(body)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        self.connection.request(method, path, body=body, headers=headers)
        response = self.connection.getresponse()
        return response, response.read().decode("utf-8", "replace")


def cookie_value(response, name):
    for header in response.headers.get_all("Set-Cookie") or []:
        pair = header.split(";", 1)[0]
        key, _, value = pair.partition("=")
        if key.strip() == name:
            return value.strip()
    raise SystemExit(f"no {name} cookie in the answer ({response.status})")


class HiddenFields(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.fields = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "input" and attrs.get("type") == "hidden":
            self.fields[attrs.get("name")] = attrs.get("value") or ""


def authorize_path(tenant, client_id):
    query = urllib.parse.urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT_URI,
            # No openid: the code exchange then signs one JWT (the access token), not two.
            "scope": "offline_access",
            "state": "s",
            "code_challenge": CHALLENGE,
            "code_challenge_method": "S256",
        }
    )
    return f"/sas/{tenant}/oauth2/authorize?{query}"


def sign_in(args):
    """Steps 1-3 of the flow, once: returns the tenant's sign-in session cookie value."""
    appliance = Appliance(args.base)
    response, _ = appliance.request("GET", authorize_path(args.tenant, args.client_id))
    if response.status != 302:
        raise SystemExit(f"authorize answered {response.status}, expected 302 to the login")
    login_url = response.headers["Location"]
    response, page = appliance.request("GET", login_url)
    if response.status != 200:
        raise SystemExit(f"login form answered {response.status}")
    csrf_cookie = cookie_value(response, "of_csrf")
    form = HiddenFields()
    form.feed(page)
    response, page = appliance.request(
        "POST",
        f"/sas/{args.tenant}/login",
        body={
            "username": args.email,
            "password": args.password,
            "_csrf": form.fields["_csrf"],
            "return": form.fields.get("return", ""),
        },
        headers={"Cookie": f"of_csrf={csrf_cookie}"},
    )
    if response.status != 303:
        raise SystemExit(f"sign-in answered {response.status}, expected 303:\n{page[:500]}")
    return cookie_value(response, f"of_sas_session_{args.tenant}")


def mint(appliance, args, session, basic):
    """Steps 4-5: a fresh code with the session, exchanged for a refresh token."""
    response, body = appliance.request(
        "GET",
        authorize_path(args.tenant, args.client_id),
        headers={"Cookie": f"of_sas_session_{args.tenant}={session}"},
    )
    location = response.headers.get("Location", "")
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query).get("code")
    if response.status != 302 or not code:
        raise RuntimeError(f"authorize answered {response.status} {location!r} {body[:200]}")
    response, body = appliance.request(
        "POST",
        f"/sas/{args.tenant}/oauth2/token",
        body={
            "grant_type": "authorization_code",
            "code": code[0],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": VERIFIER,
        },
        headers={"Authorization": f"Basic {basic}"},
    )
    if response.status != 200:
        raise RuntimeError(f"code exchange answered {response.status}: {body[:200]}")
    return json.loads(body)["refresh_token"]


retried = []  # errors that a retry got past, reported at the end: they are findings too


def mint_retrying(appliance, args, session, basic):
    """A failed attempt spends at most a code (never a refresh token), so a few retries are
    safe; they are counted and reported, not hidden."""
    for attempt in range(5):
        try:
            return mint(appliance, args, session, basic)
        except RuntimeError as error:
            if attempt == 4:
                raise
            retried.append(str(error))
            time.sleep(0.05)
    raise AssertionError("unreachable")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True)
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret", required=True)
    parser.add_argument("--email", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--out", required=True)
    # Several connections keep the server's two cores busy while Python waits on the network.
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()

    session = sign_in(args)
    # RFC 6749 §2.3.1: id and secret are form-urlencoded before joining.
    basic = base64.b64encode(
        f"{urllib.parse.quote(args.client_id, safe='')}:"
        f"{urllib.parse.quote(args.client_secret, safe='')}".encode()
    ).decode()

    tokens, failures, lock = [], [], threading.Lock()
    started = time.monotonic()

    def worker(share):
        appliance = Appliance(args.base)
        try:
            for _ in range(share):
                token = mint_retrying(appliance, args, session, basic)
                with lock:
                    tokens.append(token)
                    if len(tokens) % 2000 == 0:
                        rate = len(tokens) / (time.monotonic() - started)
                        print(f"  {len(tokens)}/{args.count} tokens ({rate:.0f}/s)", file=sys.stderr)
        except Exception as error:  # noqa: BLE001 - reported below, the run is then invalid
            with lock:
                failures.append(repr(error))

    shares = [args.count // args.workers + (i < args.count % args.workers) for i in range(args.workers)]
    threads = [threading.Thread(target=worker, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"{len(failures)} worker(s) failed, first: {failures[0]}")
    if len(set(tokens)) != args.count:
        raise SystemExit(f"expected {args.count} distinct tokens, got {len(set(tokens))}")
    with open(args.out, "w", encoding="utf-8") as out:
        out.write("\n".join(tokens) + "\n")
    elapsed = time.monotonic() - started
    if retried:
        print(f"  WARNING: {len(retried)} attempt(s) failed and were retried; first: {retried[0]}", file=sys.stderr)
    print(f"  {args.count} refresh tokens in {elapsed:.1f}s ({args.count / elapsed:.0f}/s)", file=sys.stderr)


if __name__ == "__main__":
    main()
