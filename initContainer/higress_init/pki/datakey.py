"""api/nacos.key, the apiserver's data encryption key: made once, never replaced (Secrets stored
in Nacos are encrypted with it), and what the apiserver accepts of it."""
from __future__ import annotations

from higress_init.errors import StateError
from higress_init.volume import layout

LENGTHS = (16, 24, 32)  # what the apiserver accepts from its key file (AES-128/192/256), raw bytes


def problem(data: bytes) -> str | None:
    """Why the apiserver would refuse this key file (it uses the raw bytes: 16, 24 or 32 of them)."""
    if len(data) in LENGTHS:
        return None
    if not data:
        return "is empty"
    if data != data.rstrip(b"\r\n") and len(data.rstrip(b"\r\n")) in LENGTHS:
        return (f"is {len(data)} bytes: a key followed by a line break, which the apiserver reads as part of the "
                "key and refuses to start")
    return f"is {len(data)} bytes; the apiserver accepts only exactly 16, 24 or 32"


def load(writer, settings, missing: str) -> bytes:
    """The data key a run encrypts and decrypts with: api/nacos.key, or NACOS_DATA_ENC_KEY where the
    file is absent (a gateway host); both set, they must agree. `missing`: the refusal when neither is."""
    file_key, env_key = writer.read(layout.DATA_KEY), settings.nacos_data_key
    if file_key is not None:
        unusable = problem(file_key)
        if unusable:
            raise StateError(f"{layout.DATA_KEY} {unusable}")
        if env_key is not None and env_key != file_key:
            raise StateError(f"NACOS_DATA_ENC_KEY differs from {layout.DATA_KEY}: unset one, or make them the same key")
        return file_key
    if env_key is None:
        raise StateError(missing)
    return env_key


def phase(ctx, counts) -> None:
    """api/nacos.key: generated once, never replaced (Secrets in Nacos are encrypted with it)."""
    existing = ctx.writer.read(layout.DATA_KEY)
    wanted = ctx.settings.nacos_data_key
    if existing is not None:
        unusable = problem(existing)
        if unusable:
            raise StateError(f"{layout.DATA_KEY} {unusable}. It is never replaced silently (Secrets stored with a key "
                             "become unreadable without it): write the key's exact bytes into it (printf '%s' KEY), "
                             "or, if nothing was ever stored with it, remove it to have a new key made")
        if wanted is not None and existing != wanted:
            raise StateError(f"NACOS_DATA_ENC_KEY differs from the existing {layout.DATA_KEY}: the key is never "
                             "replaced, since Secrets stored with it would become unreadable; unset "
                             "NACOS_DATA_ENC_KEY or set it to the existing key")
        counts.add("kept", "nacos.key")
        return
    import secrets
    import string
    key = wanted or "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32)).encode()
    ctx.writer.stage(layout.DATA_KEY, key, private=True)
    counts.add("created", "nacos.key")
