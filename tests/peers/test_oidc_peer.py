"""Self-tests: the OpenID Connect peer (tests/peers/oidc.py), checked with independent clients.

The id_token is verified with joserfc (what Authlib 1.9 verifies with), and one test runs the
whole code flow with Authlib's own client and claim checks, as Streamlit's ``st.login`` does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from authlib.oidc.core import CodeIDToken  # type: ignore[import-untyped]
from joserfc import jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet

from tests.peers.oidc import CLIENT_ID, CLIENT_SECRET, OidcPeer, at_hash, s256, start_oidc

pytestmark = pytest.mark.integration

REDIRECT = "http://127.0.0.1:9/oauth2callback"  # never followed: the tests read the Location
VIEWER = {"email": "viewer@corp.example", "name": "Vera Viewer", "groups": ["SG-IT-Managers"]}
VERIFIER = "a-pkce-verifier-that-is-long-enough-0123456789"


@pytest.fixture(scope="module")
def oidc() -> Iterator[OidcPeer]:
    peer = start_oidc([REDIRECT])
    yield peer
    peer.stop()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5, follow_redirects=False, trust_env=False) as client:
        yield client


def authorize(peer: OidcPeer, http: httpx.Client, **params: str) -> dict[str, str]:
    """The query the peer redirects back with (one value per key)."""
    query = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT,
             "scope": "openid email profile", "state": "st-1", "nonce": "n-1",
             "code_challenge": s256(VERIFIER), "code_challenge_method": "S256", **params}
    answer = http.get(f"{peer.issuer}/authorize", params=query)
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    assert location.startswith(REDIRECT + "?")
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


def code_for(peer: OidcPeer, http: httpx.Client, user: dict[str, Any] = VIEWER) -> str:
    peer.sign_in_next(user)
    return authorize(peer, http)["code"]


def redeem(peer: OidcPeer, http: httpx.Client, code: str, *, secret: str = CLIENT_SECRET,
           verifier: str = VERIFIER) -> httpx.Response:
    return http.post(f"{peer.issuer}/token", auth=(CLIENT_ID, secret), data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
        "code_verifier": verifier})


def test_metadata_names_its_own_endpoints_and_key(oidc: OidcPeer, http: httpx.Client) -> None:
    metadata = http.get(oidc.metadata_url).json()
    assert metadata["issuer"] == oidc.issuer == f"http://127.0.0.1:{oidc.port}"
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        assert metadata[name].startswith(oidc.issuer + "/")
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["id_token_signing_alg_values_supported"] == ["RS256"]
    keys = http.get(metadata["jwks_uri"]).json()["keys"]
    assert [(k["kty"], k["alg"], k["kid"]) for k in keys] == [("RSA", "RS256", oidc.kid)]
    assert "d" not in keys[0]  # public half only


def test_authorize_comes_straight_back_with_a_code_and_the_same_state(oidc: OidcPeer, http: httpx.Client) -> None:
    oidc.sign_in_next(VIEWER)
    back = authorize(oidc, http, state="xyz-42")
    assert back["state"] == "xyz-42" and len(back["code"]) > 20
    assert oidc.authorize_requests[-1]["nonce"] == "n-1"


def test_the_chosen_user_is_used_once(oidc: OidcPeer, http: httpx.Client) -> None:
    oidc.sign_in_next(VIEWER)
    authorize(oidc, http)
    again = authorize(oidc, http, state="second")
    assert again == {"state": "second", "error": "login_required",
                     "error_description": "the test chose no user"}


def test_unknown_client_or_redirect_uri_is_never_redirected(oidc: OidcPeer, http: httpx.Client) -> None:
    oidc.sign_in_next(VIEWER)
    for params in ({"client_id": "someone-else"}, {"redirect_uri": "http://127.0.0.1:9/elsewhere"}):
        answer = http.get(f"{oidc.issuer}/authorize", params={
            "response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT,
            "scope": "openid", "state": "s", **params})
        assert answer.status_code == 400 and "location" not in answer.headers
    assert "code" in authorize(oidc, http)  # the chosen user was not spent on the refusals


def test_id_token_verifies_against_the_jwks(oidc: OidcPeer, http: httpx.Client) -> None:
    answer = redeem(oidc, http, code_for(oidc, http))
    assert answer.status_code == 200, answer.text
    tokens = answer.json()
    assert answer.headers["cache-control"] == "no-store" and tokens["token_type"] == "Bearer"
    keys = KeySet.import_key_set(http.get(f"{oidc.issuer}/jwks").json())
    decoded = jwt.decode(tokens["id_token"], keys, algorithms=["RS256"])
    claims = decoded.claims
    assert decoded.header["kid"] == oidc.kid
    assert claims["iss"] == oidc.issuer and claims["aud"] == CLIENT_ID and claims["nonce"] == "n-1"
    assert claims["email"] == VIEWER["email"] and claims["name"] == VIEWER["name"]
    assert claims["groups"] == VIEWER["groups"] and claims["sub"]
    assert 0 < claims["exp"] - claims["iat"] <= 300
    assert claims["at_hash"] == at_hash(tokens["access_token"])
    head, body, signature = tokens["id_token"].split(".")
    forged = f"{head}.{body}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
    with pytest.raises(BadSignatureError):
        jwt.decode(forged, keys, algorithms=["RS256"])


def test_a_code_is_single_use(oidc: OidcPeer, http: httpx.Client) -> None:
    code = code_for(oidc, http)
    assert redeem(oidc, http, code).status_code == 200
    again = redeem(oidc, http, code)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_a_wrong_client_secret_is_refused(oidc: OidcPeer, http: httpx.Client) -> None:
    code = code_for(oidc, http)
    refused = redeem(oidc, http, code, secret="not-the-secret")
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    assert "id_token" not in refused.json()
    assert redeem(oidc, http, code).status_code == 200  # the refusal was about the secret alone


def test_a_wrong_pkce_verifier_is_refused(oidc: OidcPeer, http: httpx.Client) -> None:
    refused = redeem(oidc, http, code_for(oidc, http), verifier="some-other-verifier-0123456789-abcdef")
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


# Authlib 1.9 warns on importing its httpx integration (it wants "httpx2"); Streamlit uses it anyway.
@pytest.mark.filterwarnings("ignore:The httpx module is deprecated")
def test_authlib_client_completes_the_code_flow(oidc: OidcPeer, http: httpx.Client) -> None:
    """What Streamlit's st.login does with Authlib: S256 PKCE, nonce, client_secret_basic, then
    Authlib's own id_token claim checks (iss, aud, exp, iat, nonce, at_hash)."""
    from authlib.integrations.httpx_client import OAuth2Client  # type: ignore[import-untyped]

    metadata = http.get(oidc.metadata_url).json()
    with OAuth2Client(CLIENT_ID, CLIENT_SECRET, scope="openid email profile", redirect_uri=REDIRECT,
                      code_challenge_method="S256", timeout=5, trust_env=False) as client:
        verifier = "v" * 48
        url, state = client.create_authorization_url(metadata["authorization_endpoint"], nonce="n-authlib",
                                                     code_verifier=verifier)
        oidc.sign_in_next({"email": "admin@corp.example"})
        location = http.get(url).headers["location"]
        token = client.fetch_token(metadata["token_endpoint"], authorization_response=location, state=state,
                                   code_verifier=verifier)
    assert oidc.token_requests[-1].get("client_secret") is None  # sent as Basic, not in the form
    keys = KeySet.import_key_set(http.get(metadata["jwks_uri"]).json())
    decoded = jwt.decode(token["id_token"], keys, algorithms=["RS256"])
    claims = CodeIDToken(decoded.claims, decoded.header, {"iss": {"values": [oidc.issuer]}},
                         {"nonce": "n-authlib", "client_id": CLIENT_ID, "access_token": token["access_token"]})
    claims.validate()
    assert claims["email"] == "admin@corp.example"
