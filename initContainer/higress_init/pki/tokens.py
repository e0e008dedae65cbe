"""Request authentication without Kubernetes: a token signing key, its JWKS and OIDC discovery
document (static files any web server can publish), and one ServiceAccount-style JWT per
component identity."""
from __future__ import annotations

import base64
import hashlib
import json
import uuid
from datetime import datetime, timedelta

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from higress_init.errors import StateError
from higress_init.pki import primitives
from higress_init.run.reporting import expires_within, renewal
from higress_init.settings import TokenIdentity
from higress_init.volume import layout

SIGNING_KEY = "token-key"   # the artifact's one name: in output, status, rotation (ROTATIONS) and the key pool
JWKS_FILES = (layout.JWKS, layout.JWKS_WELL_KNOWN)   # the same document, where each consumer looks


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(public_key) -> dict:
    """The JWK of a public key, with kid = its RFC 7638 thumbprint."""
    import jwt  # PyJWT: loaded by what signs or checks tokens (see runner.LOADED_WHILE_KEYS_GENERATE)
    alg = primitives.jws_algorithm(public_key)
    if isinstance(public_key, rsa.RSAPublicKey):
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(public_key, as_dict=True)
        required = {k: jwk[k] for k in ("e", "kty", "n")}
    else:
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(public_key, as_dict=True)
        required = {k: jwk[k] for k in ("crv", "kty", "x", "y")}
    thumbprint = _b64url(hashlib.sha256(json.dumps(required, sort_keys=True, separators=(",", ":")).encode()).digest())
    return {**required, "kid": thumbprint, "use": "sig", "alg": alg}


def service_account_uid(namespace: str, account: str) -> str:
    """A stable uid per identity, so re-issued tokens name the same account."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"higress-init:serviceaccount:{namespace}/{account}"))


def claims_for(settings, identity: TokenIdentity, now: datetime) -> dict:
    ns = settings.namespace
    issued = int(now.timestamp())
    return {
        "iss": settings.token_issuer,
        "sub": f"system:serviceaccount:{ns}:{identity.service_account}",
        "aud": list(identity.audiences),
        "iat": issued,
        "nbf": issued,
        "exp": issued + int(settings.token_validity.total_seconds()),
        "jti": str(uuid.uuid4()),
        "kubernetes.io": {
            "namespace": ns,
            "serviceaccount": {"name": identity.service_account,
                               "uid": service_account_uid(ns, identity.service_account)},
        },
    }


def token_problem(settings, identity: TokenIdentity, token: str | None, jwks: bytes | None, kid: str,
                  now: datetime) -> str:
    """Why an existing token can't be kept (empty when it can). It is verified as a consumer
    does: through the published JWKS (`jwks`, the bytes of tokens/jwks.json), by its kid; it must
    also be signed by the current key (`kid`), or it is re-issued."""
    import jwt
    if token is None:
        return "missing"
    try:
        header = jwt.get_unverified_header(token)
        keys = jwt.PyJWKSet.from_json(jwks.decode()) if jwks else None
        if keys is None or not isinstance(header.get("kid"), str):
            return f"does not verify (no key for it in {layout.JWKS})"
        try:
            key = keys[header["kid"]]
        except KeyError:
            return f"does not verify (its key is not in {layout.JWKS})"
        claims = jwt.decode(token, key, algorithms=[key.algorithm_name],
                            audience=list(identity.audiences), issuer=settings.token_issuer,
                            options={"require": ["exp", "iat", "nbf", "sub", "jti"]}, leeway=300)
    except jwt.ExpiredSignatureError:
        return "expired"
    except (jwt.PyJWTError, UnicodeDecodeError, ValueError) as err:
        return f"does not verify ({err})"
    except (AttributeError, TypeError, RecursionError):   # JSON, but no JWKS (`[]`, `null`, nesting without end)
        return f"does not verify ({layout.JWKS} is not a JWKS)"
    wanted = claims_for(settings, identity, now)
    if header.get("kid") != kid:
        return "signed by another key"
    if claims["sub"] != wanted["sub"] or claims.get("kubernetes.io") != wanted["kubernetes.io"] or \
            sorted(claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]) != sorted(identity.audiences):
        return "claims changed"
    if claims["exp"] - now.timestamp() <= settings.renew_before.total_seconds():
        return expires_within(settings.renew_before)
    return ""


def _signing_key(ctx):
    """(private key, how it was obtained, the key it replaces): kept, created or rotated."""
    key = load_signing_key(ctx.writer)
    if key is not None:
        if SIGNING_KEY not in ctx.rotate:
            return key, "kept", None
        return ctx.pki.keys.get(SIGNING_KEY), "rotated", key
    return ctx.pki.keys.get(SIGNING_KEY), "created", None


def load_signing_key(writer):
    """The signing key on disk (None when absent); refused when it is not a key (never replaced
    silently: every token would be re-issued)."""
    pem = writer.read(layout.TOKEN_SIGNING_KEY)
    if pem is None:
        return None
    try:
        return primitives.load_key(pem)
    except (ValueError, TypeError):
        raise StateError(f"{layout.TOKEN_SIGNING_KEY} is not an unencrypted PEM private key: restore it, or move it "
                         "away to create a new signing key (every token is then re-issued)") from None


def keys_wanted(writer, rotate: set, settings) -> dict:
    if writer.read(layout.TOKEN_SIGNING_KEY) is None or SIGNING_KEY in rotate:
        return {SIGNING_KEY: settings.token_key_algorithm}
    return {}


def _retired(ctx, now: datetime) -> list[dict]:
    data = ctx.writer.read(layout.TOKEN_RETIRED_KEYS)
    try:
        entries = json.loads(data) if data else []
        return [e for e in entries if datetime.fromisoformat(e["keep_until"]) > now and isinstance(e["jwk"], dict)]
    except (ValueError, TypeError, KeyError, RecursionError):
        raise StateError(f"{layout.TOKEN_RETIRED_KEYS} is not the list of retired keys this tool writes: "
                         "restore it, or remove it (tokens signed by a retired key are then no longer "
                         "accepted)") from None


def phase(ctx, counts) -> None:
    import jwt
    s, now = ctx.settings, ctx.now
    key, how, replaced = _signing_key(ctx)
    public = key.public_key()
    retired = [] if ctx.finish_rotation else _retired(ctx, now)
    if how == "rotated":
        old = replaced.public_key()
        # tokens signed by the old key live at most TOKEN_VALIDITY: keep it published that long
        keep_until = (now + s.token_validity + timedelta(minutes=5)).isoformat()
        retired = [e for e in retired if e["jwk"]["kid"] != public_jwk(old)["kid"]]
        retired.append({"jwk": public_jwk(old), "keep_until": keep_until})
    if how != "kept":
        ctx.writer.stage(layout.TOKEN_SIGNING_KEY, primitives.key_to_pem(key), private=True)
        counts.add("created" if how == "created" else "re-issued", SIGNING_KEY)
    else:
        counts.add("kept", SIGNING_KEY)
    if retired or ctx.writer.exists(layout.TOKEN_RETIRED_KEYS):
        ctx.writer.stage(layout.TOKEN_RETIRED_KEYS, json.dumps(retired, indent=1).encode())
    jwk = public_jwk(public)
    jwks = {"keys": [jwk] + [e["jwk"] for e in retired if e["jwk"]["kid"] != jwk["kid"]]}
    jwks_bytes = json.dumps(jwks, indent=2).encode() + b"\n"
    pub_pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    ctx.stage(layout.TOKEN_PUBLIC_KEY, pub_pem, layout.TOKEN_PUBLIC_KEY, counts)
    for rel in JWKS_FILES:
        ctx.stage(rel, jwks_bytes, rel, counts)
    ctx.stage(layout.OIDC_DISCOVERY, discovery_document(s, jwk["alg"]).encode(), layout.OIDC_DISCOVERY, counts)
    for identity in s.token_identities:
        existing = ctx.writer.read(identity.file)
        text = existing.decode("utf-8", "replace").strip() if existing is not None else None
        problem = token_problem(s, identity, text, jwks_bytes, jwk["kid"], now)
        if "tokens" in ctx.rotate and not problem:
            problem = "rotation"
        if not problem:
            assert text is not None   # token_problem: "missing" without one
            counts.add("kept", f"token {identity.name}")
            expiry = jwt.decode(text, options={"verify_signature": False})["exp"]
        else:
            claims = claims_for(s, identity, now)
            token = jwt.encode(claims, key, algorithm=jwk["alg"], headers={"kid": jwk["kid"], "typ": "JWT"})
            ctx.writer.stage(identity.file, token.encode(), private=True)
            counts.add("created" if problem == "missing" else "re-issued", f"token {identity.name}")
            if problem.startswith("expire"):   # said as a certificate's renewal is, with the time it had left
                assert text is not None   # an expiring token was read
                old = jwt.decode(text, options={"verify_signature": False})["exp"]
                ctx.log(renewal(f"token {identity.name}", problem, datetime.fromtimestamp(old, tz=now.tzinfo), now,
                                ctx.plan))
            expiry = claims["exp"]
        ctx.renew_by.append(datetime.fromtimestamp(expiry, tz=now.tzinfo) - s.renew_before)
    ctx.renew_by.extend(datetime.fromisoformat(e["keep_until"]) for e in retired)  # the JWKS changes then


def discovery_document(s, algorithm: str) -> str:
    doc = {
        "issuer": s.token_issuer,
        "jwks_uri": f"{s.token_issuer}/.well-known/jwks.json",
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [algorithm],
    }
    return json.dumps(doc, indent=2) + "\n"
