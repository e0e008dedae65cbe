"""The worker of keyfloor.py's process-pool floor, in a module of its own: the pool's fork server
preloads it, and with it only what generating a key needs (as the run's workers did before keys
were made by the run's own threads)."""
from __future__ import annotations

from higress_init.pki import primitives


def generate_key_pem(algorithm: str) -> bytes:
    """Picklable: a key object cannot cross a process boundary, its PEM can."""
    return primitives.key_to_pem(primitives.generate_key(algorithm))
