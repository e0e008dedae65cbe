"""The Nacos data model the apiserver reads (its own layout; `../shared/CONTRACT.md`), in one place:
- group = the object's namespace (cluster-scoped objects: DEFAULT_GROUP), dataId `<plural>.<name>`
  (versions.objects.BaseObject.group and data_id), content the object's YAML;
- Secrets `enc|` + URL-safe base64 of AES-CBC (key = api/nacos.key, IV = its first 16 bytes, PKCS#7);
- per type an index `<plural>.__names__` in DEFAULT_GROUP listing its objects (`EMPTY`: none);
- what the seeding record calls a Nacos object (record_key)."""
from __future__ import annotations

import base64

from higress_init.versions.objects import BaseObject

SECRETS_INDEX = "secrets.__names__"
EMPTY_INDEX = "EMPTY"          # the apiserver's index of a type with no objects


def names_index(plural: str) -> str:
    return f"{plural}.__names__"


def record_key(namespace: str, group: str, obj: BaseObject) -> str:
    return f"nacos:{namespace}/{group}/{obj.data_id}"


# --- the apiserver's Secret encryption
def encrypt(text: str, key: bytes) -> str:
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    padder = padding.PKCS7(128).padder()
    padded = padder.update(text.encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return "enc|" + base64.urlsafe_b64encode(encryptor.update(padded) + encryptor.finalize()).decode()


def decrypt(content: str, key: bytes) -> str:
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    if not content.startswith("enc|"):
        return content  # the apiserver reads an unencrypted Secret as is
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    padded = decryptor.update(base64.urlsafe_b64decode(content[4:])) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return (unpadder.update(padded) + unpadder.finalize()).decode()


# --- the names indexes
def index_lines(obj: BaseObject, group: str) -> set[str]:
    """Every way an index line can name this object: the apiserver's create appends
    `<namespace>/<name>` (cluster-scoped: `/<name>`), its refresh rewrites all as `<group>/<dataId>`."""
    forms = {f"{group}/{obj.name}", f"{group}/{obj.data_id}"}
    if not obj.namespaced:
        forms.add(f"/{obj.name}")
    return forms


def index_with(content: str | None, members) -> str | None:
    """The index with a line for each object found in none of its forms; None: nothing to add.
    `EMPTY` (the apiserver's word for no objects) counts as no lines."""
    lines = [line.strip() for line in (content or "").splitlines() if line.strip()]
    present = set(lines)
    missing = [f"{'' if not o.namespaced else group}/{o.name}" for group, o in members
               if not index_lines(o, group) & present]
    if not missing:
        return None
    kept = [line for line in lines if line != EMPTY_INDEX]
    return "".join(line + "\n" for line in kept + missing)
