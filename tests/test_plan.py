"""`plan` is the run without the commit: in every state, what it lists is what `run` then does,
name by name, and it writes nothing."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import run_cli, snapshot
from test_e2e_core import _issue_leaf

SKIP_ACTIONS = {"kept", "skipped", "connected"}


@pytest.fixture(scope="module")
def template(tmp_path_factory, fast_env_module) -> Path:
    root = tmp_path_factory.mktemp("plan-template") / "volumes"
    run_cli("run", volumes=root, env=fast_env_module, check=True)
    return root


@pytest.fixture(scope="module")
def fast_env_module() -> dict:
    return {"CA_KEY_ALGORITHM": "ecdsa-p256", "LEAF_KEY_ALGORITHM": "ecdsa-p256"}


def _events(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def _actions(events) -> set[tuple[str, str, str]]:
    """(phase, action, artifact) for everything a run changes."""
    return {(e["phase"], action, name) for e in events if e["event"] == "phase"
            for action, names in e["actions"].items() if action not in SKIP_ACTIONS for name in names}


def _changed_files(before: dict, after: dict) -> set[str]:
    return {rel for rel in set(before) | set(after) if before.get(rel) != after.get(rel)
            and not rel.startswith("backup/")}


def _delete(rel):
    def breaker(v: Path):
        path = v / rel
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return breaker


def _expire_leaf(v: Path):
    cert, key = _issue_leaf(v, days_valid=10, not_before_days=20)
    (v / "api/server.crt").write_bytes(cert)
    (v / "api/server.key").write_bytes(key)


STATES = {
    "unchanged": (None, ()),
    "leaf-cert": (_delete("api/server.crt"), ()),
    "leaf-key": (_delete("gateway/certs/key.pem"), ()),
    "bundle": (_delete("gateway/certs/root-cert.pem"), ()),
    "kubeconfig": (_delete("controller/kube/config"), ()),
    "token": (_delete("console/token"), ()),
    "token-public-files": (
        lambda v: [_delete(r)(v) for r in ("tokens/sa.pub", "tokens/.well-known/openid-configuration")], ()),
    "stored-object-and-mesh": (lambda v: [_delete(r)(v) for r in ("data/configmaps/higress-console.yaml",
                                                                  "pilot/config/mesh")], ()),
    "writable-dir": (_delete("gateway/log"), ()),
    "expired-leaf": (_expire_leaf, ()),
    "rotate-leaf": (None, ("rotate", "leaf")),
    "rotate-intermediate": (None, ("rotate", "intermediate")),
    "rotate-root": (None, ("rotate", "root")),
}


def _plan_and_run(volumes: Path, env: dict):
    before = snapshot(volumes)
    state_before = sorted(p.name for p in (volumes / ".higress-init").iterdir())
    plan = run_cli("plan", "--log-format", "json", volumes=volumes, env=env, check=True)
    assert snapshot(volumes) == before, "plan wrote into the volumes"
    assert sorted(p.name for p in (volumes / ".higress-init").iterdir()) == state_before
    done = run_cli("run", "--log-format", "json", volumes=volumes, env=env, check=True)
    return _events(plan), _events(done), before, snapshot(volumes)


@pytest.mark.parametrize("state", list(STATES))
def test_plan_lists_what_run_then_does(template, tmp_path, fast_env_module, state):
    volumes = tmp_path / "volumes"
    shutil.copytree(template, volumes, symlinks=True)
    breaker, command = STATES[state]
    if breaker:
        breaker(volumes)
    env = dict(fast_env_module)
    if command:  # plan a rotation as ROTATE does; run it as the rotate command does
        env_plan = {**env, "ROTATE": command[1]}
        before = snapshot(volumes)
        plan = _events(run_cli("plan", "--log-format", "json", volumes=volumes, env=env_plan, check=True))
        assert snapshot(volumes) == before
        done = _events(run_cli(*command, "--log-format", "json", volumes=volumes, env=env, check=True))
        after = snapshot(volumes)
    else:
        plan, done, before, after = _plan_and_run(volumes, env)
    assert _actions(plan) == _actions(done)
    planned = next(e for e in plan if e["event"] == "planned")["files"]
    planned_files = {f for f in planned if not f.endswith("/") and not f.startswith(".higress-init/")}
    assert planned_files == _changed_files(before, after)
    planned_dirs = {f.rstrip("/") for f in planned if f.endswith("/")}
    assert all((volumes / d).is_dir() for d in planned_dirs)
    if state == "unchanged":
        assert planned == [] and _actions(plan) == set()
    else:
        assert planned  # every other state changes something


def test_plan_of_a_fresh_tree_lists_every_file_and_creates_nothing(tmp_path, fast_env):
    volumes = tmp_path / "volumes"
    plan = _events(run_cli("plan", "--log-format", "json", volumes=volumes, env=fast_env, check=True))
    assert not volumes.exists()
    done = _events(run_cli("run", "--log-format", "json", volumes=volumes, env=fast_env, check=True))
    assert _actions(plan) == _actions(done)
    planned = next(e for e in plan if e["event"] == "planned")["files"]
    written = {str(p.relative_to(volumes)) for p in volumes.rglob("*") if p.is_file()}
    assert {f for f in planned if not f.endswith("/")} == written - {".higress-init/last-run.json",
                                                                      ".higress-init/last-run.key",
                                                                      ".higress-init/lock",
                                                                      ".higress-init/settings.json"}


def test_plan_of_finishing_a_rotation(template, tmp_path, fast_env_module):
    volumes = tmp_path / "volumes"
    shutil.copytree(template, volumes, symlinks=True)
    run_cli("rotate", "root", volumes=volumes, env=fast_env_module, check=True)
    before = snapshot(volumes)
    plan = _events(run_cli("plan", "--log-format", "json", volumes=volumes,
                           env={**fast_env_module, "ROTATE": "finish"}, check=True))
    assert snapshot(volumes) == before
    done = _events(run_cli("rotate", "--finish", "--log-format", "json", volumes=volumes, env=fast_env_module,
                           check=True))
    assert _actions(plan) == _actions(done)
    planned = set(next(e for e in plan if e["event"] == "planned")["files"])
    assert {"pki/apiserver-ca.previous.crt", "pki/pilot-root-ca.cross.crt"} <= planned
    assert planned == _changed_files(before, snapshot(volumes))
