"""Token signing key, JWKS, OIDC discovery document and per-component tokens."""


def keys_wanted(ctx) -> dict:
    return {}


def phase(ctx, counts) -> None:
    counts.add("skipped", "tokens (not built yet)")


def status_rows(settings, writer, now) -> list:
    return []
