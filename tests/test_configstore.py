"""The base objects in the apiserver's file store, and the stored higress-config delivered into
pilot's mesh files on every run (end to end through the CLI)."""
from __future__ import annotations

import json
import re

import pytest
import yaml
from base_objects import VERSIONS, assert_console_secret, assert_higress_config, assert_matches, expected
from conftest import run_cli, snapshot

MESH, NETWORKS = "pilot/config/mesh", "pilot/config/meshNetworks"
CM = "data/configmaps/higress-config.yaml"


def _edit_stored_mesh(volumes, change):
    path = volumes / CM
    cm = yaml.safe_load(path.read_text())
    cm["data"]["mesh"] = change(cm["data"]["mesh"])
    path.write_text(yaml.safe_dump(cm))
    return cm["data"]["mesh"]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_in_the_file_store_field_by_field(initialized_template, tmp_path, fast_env, version):
    initialized = initialized_template   # made with the default, 2.2.4 (read here, never changed)
    if version != "2.2.4":
        initialized = tmp_path / "v"
        run_cli("run", volumes=initialized, env=dict(fast_env, HIGRESS_VERSION=version), check=True)
    want = expected(version=version)
    found = {(p.parent.name, p.stem) for p in (initialized / "data").rglob("*.yaml")}
    assert found == set(want)  # nacos-auth-default only with Nacos credentials
    for (plural, name), fields in want.items():
        obj = assert_matches((initialized / "data" / plural / f"{name}.yaml").read_text(), fields, f"{plural}/{name}")
        if name == "higress-config":
            assert_higress_config(obj, version)
            assert obj["data"]["mesh"] == (initialized / MESH).read_text()
            assert obj["data"]["meshNetworks"] == (initialized / NETWORKS).read_text()
        if plural == "secrets":
            assert_console_secret(obj)
    # nothing but finished objects carries a .yaml name in the store
    assert all(p.name.endswith(".yaml") and not p.name.startswith(".") for p in (initialized / "data").rglob("*")
               if p.is_file())


def test_rerun_against_a_store_the_apiserver_rewrote_changes_nothing(initialized):
    # the apiserver re-encodes what it writes (its own key order and quoting): still the same objects
    for path in (initialized / "data").rglob("*.yaml"):
        path.write_text(yaml.safe_dump(yaml.safe_load(path.read_text()), sort_keys=True))
    run_cli("run", volumes=initialized, check=True)
    before = snapshot(initialized)
    result = run_cli("run", volumes=initialized, check=True)
    assert snapshot(initialized) == before
    seed = next(line for line in result.stdout.splitlines() if line.startswith("seed "))
    assert f"kept {len(expected())}" in seed and "created" not in seed
    assert "every base object is present" in result.stdout  # and says so


def test_an_edit_in_the_store_reaches_the_mesh_files(initialized):
    old = (initialized / MESH).read_text()
    new = _edit_stored_mesh(initialized, lambda m: m.replace("dnsRefreshRate: 200s", "dnsRefreshRate: 30s"))
    status = run_cli("status", volumes=initialized)
    assert status.returncode == 1 and "the next run delivers it" in status.stdout
    result = run_cli("run", volumes=initialized, check=True)
    assert (initialized / MESH).read_text() == new != old
    assert "updated 1" in next(line for line in result.stdout.splitlines() if line.startswith("deliver "))
    backups = list((initialized / "backup").rglob("mesh"))
    assert [b.read_text() for b in backups] == [old]
    assert run_cli("status", volumes=initialized).returncode == 0


@pytest.mark.parametrize("broken, problem", [
    (lambda m: m.replace("discoveryAddress: pilot:15012", "discoveryAddress: ''"), "defaultConfig.discoveryAddress"),
    (lambda m: m + "notAMeshField: 1\n", "unknown top-level key(s) notAMeshField"),
    (lambda m: "- a list\n", "not a YAML mapping"),
    (lambda m: "key: [unclosed\n", "not valid YAML"),
])
def test_a_broken_stored_mesh_is_refused_and_the_files_keep_their_text(initialized, broken, problem):
    files = {rel: (initialized / rel).read_bytes() for rel in (MESH, NETWORKS)}
    _edit_stored_mesh(initialized, broken)
    result = run_cli("run", volumes=initialized)
    assert result.returncode == 3, (result.stdout, result.stderr)
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and "configmaps/higress-config" in err and problem in err
    assert "keep their last good text" in err and "kubectl" in err
    assert {rel: (initialized / rel).read_bytes() for rel in files} == files
    status = run_cli("status", volumes=initialized)
    assert status.returncode == 1 and problem in status.stdout


def test_a_mesh_file_edited_here_is_refused_then_pushed_into_the_store(initialized):
    mesh = initialized / MESH
    edited = mesh.read_text().replace("dnsRefreshRate: 200s", "dnsRefreshRate: 45s")
    mesh.write_text(edited)
    stored_before = (initialized / CM).read_text()
    result = run_cli("run", volumes=initialized)
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert MESH in result.stderr and "--push-mesh" in result.stderr and "remove the file" in result.stderr
    assert mesh.read_text() == edited and (initialized / CM).read_text() == stored_before
    status = run_cli("status", volumes=initialized)
    assert status.returncode == 1 and "edited here" in status.stdout
    pushed = run_cli("run", "--push-mesh", volumes=initialized, check=True)
    assert "pushed from the mesh files" in pushed.stdout or "updated" in pushed.stdout
    cm = yaml.safe_load((initialized / CM).read_text())
    assert cm["data"]["mesh"] == edited and mesh.read_text() == edited
    assert cm["metadata"]["labels"]["higress"] == "higress-system-higress-gateway"  # the rest of the object kept
    before = snapshot(initialized)
    run_cli("run", volumes=initialized, check=True)  # once: afterwards the store is the truth again
    assert snapshot(initialized) == before
    assert run_cli("status", volumes=initialized).returncode == 0


def test_a_mesh_file_edited_here_and_then_removed_gets_the_stored_text(initialized):
    stored = (initialized / MESH).read_text()
    (initialized / MESH).write_text(stored.replace("dnsRefreshRate: 200s", "dnsRefreshRate: 46s"))
    assert run_cli("run", volumes=initialized).returncode == 3
    (initialized / MESH).unlink()  # the second way out: drop the edit
    result = run_cli("run", volumes=initialized, check=True)
    assert (initialized / MESH).read_text() == stored
    assert "created 1" in next(line for line in result.stdout.splitlines() if line.startswith("deliver "))
    assert run_cli("status", volumes=initialized).returncode == 0


def test_push_of_a_file_pilot_cannot_use_is_refused(initialized):
    (initialized / MESH).write_text("trustDomain: cluster.local\n")
    stored = (initialized / CM).read_text()
    result = run_cli("run", "--push-mesh", volumes=initialized)
    assert result.returncode == 3 and "discoveryAddress" in result.stderr and "nothing was pushed" in result.stderr
    assert (initialized / CM).read_text() == stored


def test_mesh_files_of_an_installation_older_than_the_store_are_adopted(initialized):
    # an earlier version made the mesh files once and left them to the user: the first store copy keeps the edit
    edited = (initialized / MESH).read_text().replace("dnsRefreshRate: 200s", "dnsRefreshRate: 20s")
    (initialized / MESH).write_text(edited)
    for path in (initialized / "data").rglob("*.yaml"):
        path.unlink()
    (initialized / ".higress-init/mesh-delivered.json").unlink()
    run_cli("run", volumes=initialized, check=True)
    assert yaml.safe_load((initialized / CM).read_text())["data"]["mesh"] == edited
    assert (initialized / MESH).read_text() == edited


def test_plan_says_what_delivery_would_do(initialized):
    _edit_stored_mesh(initialized, lambda m: m.replace("dnsRefreshRate: 200s", "dnsRefreshRate: 31s"))
    before = snapshot(initialized)
    line = next(li for li in run_cli("plan", volumes=initialized, check=True).stdout.splitlines()
                if li.startswith("deliver "))
    assert "would update 1" in line and snapshot(initialized) == before


# --- api/nacos.key: the apiserver reads raw bytes and accepts only 16, 24 or 32 of them
@pytest.mark.parametrize("content, problem", [
    (b"k" * 32 + b"\n", "a key followed by a line break"),
    (b"k" * 20, "is 20 bytes"),
    (b"", "is empty"),
])
def test_a_data_key_file_the_apiserver_would_refuse_is_refused(initialized, content, problem):
    (initialized / "api/nacos.key").write_bytes(content)
    result = run_cli("run", volumes=initialized)
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert "api/nacos.key" in result.stderr and problem in result.stderr
    assert (initialized / "api/nacos.key").read_bytes() == content  # never kept, never replaced
    status = run_cli("status", "--output", "json", volumes=initialized)
    row = next(r for r in json.loads(status.stdout)["files"] if r["file"] == "api/nacos.key")
    assert status.returncode == 1 and problem in row["state"]


@pytest.mark.parametrize("length", [16, 24])
def test_shorter_aes_keys_the_apiserver_accepts_are_kept(initialized, length):
    (initialized / "api/nacos.key").write_bytes(b"a" * length)
    run_cli("run", volumes=initialized, check=True)
    assert (initialized / "api/nacos.key").read_bytes() == b"a" * length
    assert run_cli("status", volumes=initialized).returncode == 0


@pytest.mark.parametrize("value", ["k" * 31, "k" * 33, "k" * 16])
def test_a_data_key_setting_not_exactly_32_bytes_is_bad_input(volumes, fast_env, value):
    result = run_cli("run", volumes=volumes, env=dict(fast_env, NACOS_DATA_ENC_KEY=value))
    assert result.returncode == 2 and "NACOS_DATA_ENC_KEY" in result.stderr and "32" in result.stderr
    assert not volumes.exists()


def _reseed_lines(stdout: str) -> list[str]:
    """The reseed messages, whole: from --log-format json (text wraps a long one within 120 columns)."""
    events = [json.loads(line) for line in stdout.splitlines()]
    return [e["message"] for e in events if e.get("message", "").startswith("reseed:")]


def test_plan_reseed_says_what_run_reseed_would_replace_and_run_backs_each_object_up(initialized):
    edited = _edit_stored_mesh(initialized, lambda mesh: mesh + "# edited in the store\n")
    before = snapshot(initialized)
    plan = run_cli("plan", "--reseed", volumes=initialized, check=True)
    assert snapshot(initialized) == before and not (initialized / "backup").exists()
    assert "would update" in plan.stdout and "higress-init run --reseed" in plan.stdout, plan.stdout
    assert re.search(r"^reseed: would back up the \d+ stored objects it would replace", plan.stdout, re.M), plan.stdout
    run = run_cli("run", "--reseed", "--log-format", "json", volumes=initialized, check=True)
    [line] = _reseed_lines(run.stdout)
    folder = line.rsplit(" in ", 1)[1]
    assert line.startswith("reseed: backed up the ") and folder.startswith(f"{initialized}/backup/"), line
    from pathlib import Path
    saved = yaml.safe_load((Path(folder) / CM).read_text())
    assert saved["data"]["mesh"] == edited                       # what it replaced, as it was
    assert "# edited in the store" not in (initialized / CM).read_text()
    assert (Path(folder) / CM).stat().st_mode & 0o077 == 0      # private, as every backup
    # plan takes --push-mesh too (run's options), writing nothing
    push = run_cli("plan", "--push-mesh", volumes=initialized)
    assert push.returncode in (0, 3) and "unrecognized arguments" not in push.stderr, push.stderr


def test_run_reseed_backs_up_each_nacos_object_it_overwrites(tmp_path, rnacos, fast_env):  # noqa: F811
    node = rnacos()
    ns = "higress-system"
    env = {**fast_env, "NACOS_SERVER_URL": node.url}
    volumes = tmp_path / "volumes"
    run_cli("run", volumes=volumes, env=env, check=True)
    stored = node.get_config("configmaps.higress-config", ns, ns)
    node.publish_config("configmaps.higress-config", ns, ns, stored + "# edited in Nacos\n")
    plan = run_cli("plan", "--reseed", volumes=volumes, env=env, check=True)
    assert node.get_config("configmaps.higress-config", ns, ns).endswith("# edited in Nacos\n")
    assert not (volumes / "backup").exists() or not list((volumes / "backup").rglob("nacos")), plan.stdout
    run = run_cli("run", "--reseed", "--log-format", "json", volumes=volumes, env=env, check=True)
    [line] = _reseed_lines(run.stdout)
    assert "(Nacos)" in line, line
    from pathlib import Path
    folder = Path(line.rsplit(" in ", 1)[1])
    saved = folder / "nacos" / ns / ns / "configmaps.higress-config"
    assert saved.read_text().endswith("# edited in Nacos\n") and saved.stat().st_mode & 0o077 == 0
    assert "# edited in Nacos" not in node.get_config("configmaps.higress-config", ns, ns)
    # one copy for each object the line counts (the random console Secret is never reseeded)
    count = int(line.split("backed up the ")[1].split()[0])
    assert len([p for p in (folder / "nacos").rglob("*") if p.is_file()]) == count > 1, line
