"""Component tokens, verified from the published JWKS alone by pyjwt and by joserfc."""
from __future__ import annotations

import json
import time

import jwt as pyjwt
import pytest
from conftest import run_cli, snapshot
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jwt as jose_jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

TOKENS = {"gateway": ("gateway/tokens/istio-token", "higress-gateway"),
          "console": ("console/token", "higress-console"),
          "controller": ("controller/token", "higress-controller")}
ISSUER = "https://higress-init.higress-system.svc"
PRIVATE_JWK_FIELDS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def _jwks(volumes) -> dict:
    return json.loads((volumes / "tokens/jwks.json").read_text())


def verify_pyjwt(token: str, jwks: dict, audience: str, issuer: str = ISSUER) -> dict:
    kid = pyjwt.get_unverified_header(token)["kid"]
    key = pyjwt.PyJWKSet.from_dict(jwks)[kid]
    return pyjwt.decode(token, key.key, algorithms=[key.algorithm_name], audience=audience, issuer=issuer)


def verify_joserfc(token: str, jwks: dict, audience: str, issuer: str = ISSUER) -> dict:
    keys = KeySet.import_key_set(jwks)
    decoded = jose_jwt.decode(token, keys, algorithms=["RS256", "ES256", "ES384"])
    registry = jose_jwt.JWTClaimsRegistry(iss={"essential": True, "value": issuer},
                                          aud={"essential": True, "value": audience},
                                          exp={"essential": True}, nbf={"essential": True})
    registry.validate(decoded.claims)
    return decoded.claims


def _both_reject(token, jwks, audience="istio-ca"):
    with pytest.raises(pyjwt.PyJWTError):
        verify_pyjwt(token, jwks, audience)
    with pytest.raises((JoseError, ValueError, KeyError)):
        verify_joserfc(token, jwks, audience)


@pytest.mark.parametrize("algorithm", ["rsa-2048", "ecdsa-p256"])
def test_every_token_verifies_from_the_jwks_alone_with_two_libraries(volumes, fast_env, algorithm):
    run_cli("run", volumes=volumes, env=dict(fast_env, TOKEN_KEY_ALGORITHM=algorithm), check=True)
    jwks = _jwks(volumes)
    for rel, account in TOKENS.values():
        token = (volumes / rel).read_text()
        for verify in (verify_pyjwt, verify_joserfc):
            claims = verify(token, jwks, "istio-ca")
            assert claims["sub"] == f"system:serviceaccount:higress-system:{account}"
            assert claims["kubernetes.io"]["namespace"] == "higress-system"
            assert claims["kubernetes.io"]["serviceaccount"]["name"] == account
            assert claims["kubernetes.io"]["serviceaccount"]["uid"]
            assert {"iat", "nbf", "exp", "jti"} <= set(claims)
            assert 364 * 86400 < claims["exp"] - claims["iat"] <= 365 * 86400
        assert pyjwt.get_unverified_header(token)["kid"] == jwks["keys"][0]["kid"]
        assert (volumes / rel).stat().st_mode & 0o777 == 0o600
    key = jwks["keys"][0]
    assert key["use"] == "sig" and key["alg"] == ("RS256" if algorithm.startswith("rsa") else "ES256")


def test_kid_is_the_rfc7638_thumbprint(initialized):
    from joserfc.jwk import RSAKey
    jwk = _jwks(initialized)["keys"][0]
    assert RSAKey.import_key(jwk).thumbprint() == jwk["kid"]


def test_forged_wrong_audience_and_expired_tokens_are_rejected_by_both(initialized):
    jwks = _jwks(initialized)
    good = (initialized / "gateway/tokens/istio-token").read_text()
    claims = pyjwt.decode(good, options={"verify_signature": False})
    kid = pyjwt.get_unverified_header(good)["kid"]
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _both_reject(pyjwt.encode(claims, other, algorithm="RS256", headers={"kid": kid}), jwks)
    _both_reject(good, jwks, audience="someone-else")
    signing = pyjwt.PyJWKSet.from_dict(jwks)[kid]  # public only: expired token needs the real key
    from higress_init.pki import primitives
    private = primitives.load_key((initialized / "pki/sa.key").read_bytes())
    expired = dict(claims, iat=int(time.time()) - 7200, nbf=int(time.time()) - 7200, exp=int(time.time()) - 3600)
    token = pyjwt.encode(expired, private, algorithm="RS256", headers={"kid": kid})
    _both_reject(token, jwks)
    assert signing.key_id == kid


def test_discovery_document_names_the_published_jwks(initialized):
    doc = json.loads((initialized / "tokens/.well-known/openid-configuration").read_text())
    assert doc["issuer"] == ISSUER
    assert doc["jwks_uri"] == ISSUER + "/.well-known/jwks.json"
    served = initialized / "tokens" / doc["jwks_uri"].removeprefix(doc["issuer"] + "/")
    assert json.loads(served.read_text()) == _jwks(initialized)
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]


def test_no_private_key_material_in_public_files(initialized):
    for rel in ("tokens/jwks.json", "tokens/.well-known/jwks.json"):
        for key in json.loads((initialized / rel).read_text())["keys"]:
            assert not PRIVATE_JWK_FIELDS & set(key), key.keys()
    assert (initialized / "tokens/sa.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    for path in (initialized / "tokens").rglob("*"):
        if path.is_file():
            assert "PRIVATE" not in path.read_text(), path
    assert (initialized / "pki/sa.key").stat().st_mode & 0o777 == 0o600


def test_rerun_keeps_tokens_and_a_deleted_token_alone_is_reissued(initialized):
    before = snapshot(initialized)
    run_cli("run", volumes=initialized, check=True)
    assert snapshot(initialized) == before
    (initialized / "console/token").unlink()
    run_cli("run", volumes=initialized, check=True)
    after = snapshot(initialized)
    assert {k for k in after if before.get(k) != after.get(k)} == {"console/token"}


def test_token_signed_by_another_key_is_reissued_and_status_says_so(initialized):
    path = initialized / "controller/token"
    claims = pyjwt.decode(path.read_text(), options={"verify_signature": False})
    other = ec.generate_private_key(ec.SECP256R1())
    path.write_text(pyjwt.encode(claims, other, algorithm="ES256"))
    status = run_cli("status", "--output", "json", volumes=initialized)
    assert status.returncode == 1
    row = next(r for r in json.loads(status.stdout)["files"] if r["name"] == "token controller")
    assert row["chain_verified"] is False and "does not verify" in row["state"]
    run_cli("run", volumes=initialized, check=True)
    verify_pyjwt(path.read_text(), _jwks(initialized), "istio-ca")
    assert run_cli("status", volumes=initialized).returncode == 0


def test_custom_identities_issuer_and_lifetime(volumes, fast_env):
    env = dict(fast_env, TOKEN_ISSUER="https://auth.example.com/higress",
               TOKEN_IDENTITIES="gateway=gateway/tokens/istio-token:edge:istio-ca,"
                                "metrics=metrics/token:prom:metrics+istio-ca",
               TOKEN_VALIDITY="2d", RENEW_BEFORE="1d")
    run_cli("run", volumes=volumes, env=env, check=True)
    jwks = _jwks(volumes)
    claims = verify_joserfc((volumes / "metrics/token").read_text(), jwks, "metrics",
                            issuer="https://auth.example.com/higress")
    assert claims["aud"] == ["metrics", "istio-ca"] and claims["exp"] - claims["iat"] == 2 * 86400
    verify_pyjwt((volumes / "gateway/tokens/istio-token").read_text(), jwks, "istio-ca",
                 issuer="https://auth.example.com/higress")
    assert not (volumes / "console/token").exists()
    status = run_cli("status", volumes=volumes, env=env)
    assert status.returncode == 0 and "token metrics" in status.stdout


def test_changed_audience_reissues_the_token(initialized):
    before = (initialized / "gateway/tokens/istio-token").read_text()
    env = {"TOKEN_IDENTITIES": "gateway=gateway/tokens/istio-token:higress-gateway:istio-ca+extra,"
                               "console=console/token:higress-console:istio-ca,"
                               "controller=controller/token:higress-controller:istio-ca"}
    run_cli("run", "--change-setting", "TOKEN_IDENTITIES", volumes=initialized, env=env, check=True)
    after = (initialized / "gateway/tokens/istio-token").read_text()
    assert after != before
    assert verify_pyjwt(after, _jwks(initialized), "extra")["aud"] == ["istio-ca", "extra"]
    assert (initialized / "console/token").read_text()  # untouched, still there
