"""An OpenID Connect relying party built on authlib, run by the test
`oidc::authlib`: an independent client checks gatehouse's provider.

It does discovery, the code flow with PKCE (S256) and a nonce, signs in as
a person would (the sign-in form, the consent page), validates the ID token
against the JWKS, calls userinfo, rotates the refresh token, then has the
person sign out of gatehouse and waits for the back-channel logout token on
a receiver of its own, which it validates too. Every check that fails
raises; the last line printed is a JSON summary the test reads.

Input: a JSON object in the environment variable RP_INPUT (issuer,
client_id, client_secret, redirect_uri, username, password,
backchannel_port).
"""

import html
import json
import os
import re
import threading
import time
import urllib.parse
import warnings
from http.server import BaseHTTPRequestHandler, HTTPServer

warnings.simplefilter("ignore")

import requests  # noqa: E402
from authlib.common.security import generate_token  # noqa: E402
from authlib.integrations.requests_client import OAuth2Session  # noqa: E402
from authlib.jose import JsonWebKey, jwt  # noqa: E402
from authlib.oidc.core import CodeIDToken  # noqa: E402

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"

cfg = json.loads(os.environ["RP_INPUT"])
issuer = cfg["issuer"]
received = []


class Receiver(BaseHTTPRequestHandler):
    """The app's back-channel logout endpoint."""

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        form = urllib.parse.parse_qs(self.rfile.read(n).decode())
        received.append(form.get("logout_token", [""])[0])
        self.send_response(200)
        self.send_header("Cache-Control", "no-store")
        self.end_headers()

    def log_message(self, *args):
        pass


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def location(r):
    check(r.status_code in (302, 303), f"expected a redirect, got {r.status_code}: {r.text[:300]}")
    return urllib.parse.urljoin(r.url, r.headers["Location"])


def sign_in_and_consent(browser, url):
    """Walks the browser from the authorization URL to the app's redirect
    URI, signing in and allowing when asked; returns that redirect."""
    for _ in range(10):
        if url.startswith(cfg["redirect_uri"]):
            return url
        r = browser.get(url, allow_redirects=False)
        if r.status_code in (302, 303):
            url = location(r)
            continue
        check(r.status_code == 200, f"{url}: {r.status_code} {r.text[:300]}")
        if 'action="/login"' in r.text:
            rd = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)["rd"][0]
            r = browser.post(
                issuer + "/login",
                data={"username": cfg["username"], "password": cfg["password"], "rd": rd},
                allow_redirects=False,
            )
            url = location(r)
        elif 'action="/oidc/consent"' in r.text:
            request = html.unescape(re.search(r'name="request" value="([^"]*)"', r.text).group(1))
            r = browser.post(
                issuer + "/oidc/consent",
                data={"request": request, "decision": "allow"},
                allow_redirects=False,
            )
            url = location(r)
        else:
            raise AssertionError(f"unexpected page at {url}: {r.text[:300]}")
    raise AssertionError("too many steps")


def main():
    server = HTTPServer(("127.0.0.1", cfg["backchannel_port"]), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    meta = requests.get(issuer + "/.well-known/openid-configuration").json()
    check(meta["issuer"] == issuer, "discovery names another issuer")
    check("S256" in meta["code_challenge_methods_supported"], "no S256")
    keys = JsonWebKey.import_key_set(requests.get(meta["jwks_uri"]).json())

    client = OAuth2Session(
        cfg["client_id"],
        cfg["client_secret"],
        scope="openid profile email groups offline_access",
        redirect_uri=cfg["redirect_uri"],
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_basic",
    )
    verifier = generate_token(64)
    nonce = generate_token(24)
    url, state = client.create_authorization_url(
        meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce
    )
    browser = requests.Session()
    callback = sign_in_and_consent(browser, url)
    params = urllib.parse.parse_qs(urllib.parse.urlparse(callback).query)
    check(params["state"] == [state], "state did not come back")
    check(params["iss"] == [issuer], "iss (RFC 9207) missing or wrong")

    token = client.fetch_token(
        meta["token_endpoint"], authorization_response=callback, code_verifier=verifier
    )
    claims = jwt.decode(
        token["id_token"],
        keys,
        claims_cls=CodeIDToken,
        claims_options={"iss": {"essential": True, "value": issuer}},
        claims_params={"nonce": nonce, "client_id": cfg["client_id"]},
    )
    claims.validate()
    check(claims["aud"] == cfg["client_id"], "aud")
    check("pwd" in claims["amr"], "amr")

    info = client.get(meta["userinfo_endpoint"]).json()
    check(info["sub"] == claims["sub"], "userinfo names another subject")

    first_refresh = token["refresh_token"]
    rotated = client.refresh_token(meta["token_endpoint"], refresh_token=first_refresh)
    check(rotated["refresh_token"] != first_refresh, "the refresh token was not rotated")
    again = client.get(meta["userinfo_endpoint"]).json()
    check(again["sub"] == claims["sub"], "userinfo after refresh")

    # Signing out of gatehouse tells the app over the back channel.
    r = browser.post(issuer + "/logout", allow_redirects=False)
    check(r.status_code == 303, f"sign-out answered {r.status_code}")
    deadline = time.time() + 20
    while not received and time.time() < deadline:
        time.sleep(0.05)
    check(received, "no logout token arrived")
    logout = jwt.decode(received[0], keys)
    logout.validate()
    check(logout["iss"] == issuer and logout["aud"] == cfg["client_id"], "logout token iss/aud")
    check(logout["sid"] == claims["sid"], "the logout token names another session")
    check(BACKCHANNEL_EVENT in logout["events"], "no back-channel event")
    check("nonce" not in logout, "a logout token carries no nonce")
    header = json.loads(
        __import__("base64").urlsafe_b64decode(received[0].split(".")[0] + "==")
    )
    check(header["typ"] == "logout+jwt", "logout token typ")

    # The session's grants died with it: the rotated refresh token is dead.
    dead = requests.post(
        meta["token_endpoint"],
        data={"grant_type": "refresh_token", "refresh_token": rotated["refresh_token"]},
        auth=(cfg["client_id"], cfg["client_secret"]),
    )
    check(dead.status_code == 400 and dead.json()["error"] == "invalid_grant", f"refresh after sign-out: {dead.text}")

    print(json.dumps({
        "sub": claims["sub"],
        "sid": claims["sid"],
        "email": info.get("email"),
        "preferred_username": info.get("preferred_username"),
        "groups": info.get("groups"),
        "acr": claims["acr"],
        "kid": json.loads(__import__("base64").urlsafe_b64decode(token["id_token"].split(".")[0] + "=="))["kid"],
    }))


main()
