"""The warm-rerun fast path. The initializer blocks every container's start, and most of a rerun
that changes nothing is spent importing cryptography and PyJWT to re-check files that nobody
touched. After a full run the inputs are recorded: the settings, the code version, and for every
file the run read or wrote its inode, size, mtime and ctime (ctime can't be set back by tools),
plus the earliest moment anything would need renewing. A later plain `run` whose inputs all match,
before that moment, has nothing to do for the local phases; any difference takes the full path.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from datetime import datetime
from pathlib import Path

from higress_init import __version__
from higress_init.run.reporting import Counts
from higress_init.store import kinds
from higress_init.volume import journal, layout
from higress_init.volume.safefs import Root, parts_of

# The record is signed with a random key only root can read: an edited or planted record fails
# the check and the run takes the full path, so the record can only ever make a run do more work,
# never less. The same key makes the settings digest useless for guessing the Nacos password
# offline. The key lives beside the record in .higress-init/ (0700, never given to VOLUMES_UID,
# unlike pki/), and counts only when root owns it: whoever owns the volumes root could swap the
# folder for one of their own, but can't make a file owned by root.
# Only the phases marked local (phases.Phase.local: files and settings are their only inputs) are
# replayed. `nacos`, `seed` and `deliver` run every time: the store (Nacos, or the file store the
# apiserver writes into) may have changed without the volumes knowing, and its higress-config must
# reach the mesh files like a ConfigMap reaches a pod.


def _root(settings):
    return Root(settings.volumes_root)


def _sign(key: bytes, body: str) -> str:
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def _settings_digest(key: bytes, settings) -> str:
    return _sign(key, f"{__version__}|{settings!r}")


def _stat(root, rel: str):
    """What the record keeps of a file and of each directory above it: any change of content,
    mode, owner or type (a link planted anywhere on the way) shows."""
    parts = parts_of(rel)
    out: list[list[int] | None] = []
    for i in range(1, len(parts) + 1):
        st = root.lstat(parts[:i])
        if st is None:
            out.append(None)
            break
        out.append([st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode, st.st_uid, st.st_gid,
                    st.st_nlink] if i == len(parts) else [st.st_ino, st.st_mode, st.st_uid, st.st_gid])
    return out


def _relative(settings, paths) -> list[str]:
    root = settings.volumes_root
    return sorted({str(Path(p).relative_to(root)) for p in paths if Path(p).is_relative_to(root)})


def record(settings, paths, deadline: datetime | None, kept: dict[str, dict[str, int]],
           valid_from: datetime | None = None) -> None:
    """Remember this run's inputs (called after a full run, with the lock held). `valid_from`: when
    the last of its certificates becomes valid; before that moment (a clock that was ahead during
    the run, corrected since), a run takes the full path, which re-issues what is not valid yet."""
    root = _root(settings)
    try:
        if deadline is None:
            _remove(root)
            return
        key = _key(root)
        if key is None:
            key = secrets.token_bytes(32)
            journal.write_atomic(root, layout.LAST_RUN_KEY, key, 0o600)
        files = _relative(settings, paths)
        body = json.dumps({"deadline": deadline.isoformat(), "kept": kept,
                           "valid_from": valid_from.isoformat() if valid_from else None,
                           "files": {rel: _stat(root, rel) for rel in files}}, sort_keys=True)
        state = {"settings": _settings_digest(key, settings), "body": body,
                 "mac": _sign(key, _settings_digest(key, settings) + body)}
        journal.write_atomic(root, layout.LAST_RUN, json.dumps(state).encode(), 0o600)
    finally:
        root.close()


def unchanged(settings, now: datetime) -> dict[str, dict[str, int]] | None:
    """The per-phase outcome counts of the last run when nothing it depends on has changed.
    Anything unexpected (no key, a bad signature, garbage, a link) means: take the full path."""
    root = _root(settings)
    try:
        key = _key(root)
        state = json.loads(root.read(tuple(layout.LAST_RUN.split("/"))) or b"null")
        if not key or not isinstance(state, dict):
            return None
        digest = _settings_digest(key, settings)
        if not hmac.compare_digest(str(state.get("settings")), digest) or \
                not hmac.compare_digest(str(state.get("mac")), _sign(key, digest + str(state.get("body")))):
            return None
        body = json.loads(state["body"])
        if now >= datetime.fromisoformat(body["deadline"]):
            return None
        if body.get("valid_from") and now < datetime.fromisoformat(body["valid_from"]):
            return None
        if any(_stat(root, rel) != recorded for rel, recorded in body["files"].items()):
            return None
        return body["kept"]
    except Exception:  # noqa: BLE001 - the record can only ever add work: any doubt, full path
        return None
    finally:
        root.close()


def _key(root) -> bytes | None:
    """The record's key when it is root's own: a regular 0600 file owned by this process's user."""
    parts = parts_of(layout.LAST_RUN_KEY)
    st = root.lstat(parts)
    if st is None or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        return None
    key = root.read(parts)
    return key if key and len(key) >= 32 else None


def _remove(root) -> None:
    dir_fd = root.open_dir((layout.STATE_DIR,))
    if dir_fd is not None:
        try:
            os.unlink("last-run.json", dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        finally:
            os.close(dir_fd)


def forget(settings) -> None:
    root = _root(settings)
    try:
        if root.exists():
            _remove(root)
    finally:
        root.close()


def outcome(counts) -> dict[str, int]:
    """What a rerun would report for a phase: whatever this run made, a rerun keeps."""
    result: dict[str, int] = {}
    for action, items in counts.by_action.items():
        if action not in ("written", "owner set"):
            kind = "skipped" if action == "skipped" else "kept"  # noqa: SIM108
            result[kind] = result.get(kind, 0) + len(items)
    return result


def replay(kept: dict[str, dict[str, int]], phase: str) -> Counts:
    counts = Counts()
    for action, number in kept.get(phase, {}).items():
        for _ in range(number):
            counts.add(action, phase)
    return counts


# The pilot CA's Secret keys and the files they stand for: sharedca.CA_FILES (a test keeps them equal)
SHARED_CA_FILES = {"ca-cert.pem": layout.PILOT_CA_CERT, "ca-key.pem": layout.PILOT_CA_KEY,
                   "root-cert.pem": layout.PILOT_ROOT_CERT, "cert-chain.pem": layout.PILOT_CHAIN}


def shared_ca_unchanged(ctx, counts) -> bool:
    """The warm path's look at the shared pilot CA (Nacos storage, the `shared-ca` phase): True when
    the Secret cacerts, as the database holds it, is byte for byte what this host last published or
    adopted, and the local CA files are what they were then, nothing pending (sharedca.record); its
    line in secrets.__names__ is checked as usual. Then nothing in it needs deciding again: no
    decryption, no certificate parsing, no import of cryptography (0.06 s and more a rerun).
    Anything else, False: sharedca decides in full (follows a rotation, refuses a CA that differs)."""
    import hashlib

    from higress_init.store.nacos.store import NacosStore
    from higress_init.store.seeding import md5
    from higress_init.versions.objects import CACERTS
    local = {key: ctx.writer.read(rel) for key, rel in SHARED_CA_FILES.items()}
    if None in local.values():
        return False
    entry = ctx.writer.read_record(layout.SHARED_CA_RECORD)
    wanted = {"files": {key: hashlib.sha256(data).hexdigest() for key, data in local.items()},
              "published_md5": entry.get("published_md5")}
    if entry != wanted or not isinstance(wanted["published_md5"], str):
        return False
    kinds.open_store(ctx)
    if md5(ctx.nacos.get_stored(CACERTS.data_id, CACERTS.group(ctx.settings))) != wanted["published_md5"]:
        return False
    counts.add("kept", CACERTS.label)
    NacosStore(ctx, ctx.nacos).finish(counts, [CACERTS])   # the index kubectl lists Secrets by
    return True
