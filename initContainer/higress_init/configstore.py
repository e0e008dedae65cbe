"""Where the base config goes: the apiserver's file store (the embedded default) or Nacos."""
from __future__ import annotations

from .errors import StateError
from .phases import MESH_FILE, MESH_NETWORKS_FILE

MESH_FILES = (MESH_FILE, MESH_NETWORKS_FILE)
CONFIGMAP_NAME = "higress-config"


def base_configmap(ctx) -> str:
    """The ConfigMap YAML, carrying the same text as the mesh files in the volumes."""
    from . import meshconfig
    texts = []
    for rel in MESH_FILES:
        data = ctx.writer.read(rel)
        if data is None:
            raise StateError(f"{rel} is missing: run phase pod-config first")
        texts.append(data.decode())
    return meshconfig.dump(meshconfig.configmap(ctx.settings, *texts, ctx.now))


def file_store_path(settings, plural: str, name: str):
    return settings.file_root_dir / plural / f"{name}.yaml"


def prepare(ctx, counts) -> None:
    if ctx.settings.config_storage != "nacos":
        counts.add("skipped", "file storage")
        return
    from . import nacos
    nacos.prepare(ctx, counts)


def seed(ctx, counts) -> None:
    if ctx.settings.config_storage == "nacos":
        from . import nacos
        nacos.seed(ctx, counts)
        if not ctx.dry_run:
            # the apiserver's compose service mounts it either way: create it owned as configured
            ctx.writer.ensure_dir(ctx.settings.file_root_dir)
        return
    path = file_store_path(ctx.settings, "configmaps", CONFIGMAP_NAME)
    name = f"configmaps/{CONFIGMAP_NAME}"
    if ctx.writer.exists(path) and not ctx.reseed:
        counts.add("kept", name)  # the user's config: never overwritten without --reseed
        return
    if ctx.dry_run:
        counts.add("would create", name)
        return
    action = "updated" if ctx.writer.exists(path) else "created"
    ctx.writer.stage(path, base_configmap(ctx).encode())
    ctx.writer.commit()
    counts.add(action, name)
