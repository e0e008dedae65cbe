"""HIGRESS_VERSION: which release a run seeds for, bad input, and the upgrade of a deployment made
for 2.1.2 to 2.2.4 (end to end through the CLI, file store; Nacos: test_seed_nacos)."""
from __future__ import annotations

import json

import pytest
import yaml
from base_objects import VERSIONS, assert_higress_config, assert_matches, expected
from conftest import run_cli, snapshot

RESOLVER = "data/envoyfilters/higress-http-resolver-cluster.yaml"
SEEDED = ".higress-init/seeded.json"
SETTINGS_RECORD = ".higress-init/settings.json"


@pytest.mark.parametrize("value", ["2.3.0", "2.1", "latest", "2.2.4x"])
def test_an_unknown_version_is_bad_input_naming_the_supported_ones(volumes, fast_env, value):
    result = run_cli("run", volumes=volumes, env=dict(fast_env, HIGRESS_VERSION=value))
    assert result.returncode == 2, (result.stdout, result.stderr)
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and "HIGRESS_VERSION" in err
    assert all(v in err for v in VERSIONS), err
    assert not volumes.exists()
    flag = run_cli("plan", "--higress-version", value, volumes=volumes, env=fast_env)
    assert flag.returncode == 2 and "HIGRESS_VERSION" in flag.stderr


def _status(volumes, env) -> tuple[int, dict, str]:
    as_json = run_cli("status", "--output", "json", volumes=volumes, env=env)
    text = run_cli("status", volumes=volumes, env=env)
    return as_json.returncode, json.loads(as_json.stdout), text.stdout


@pytest.mark.parametrize("version", VERSIONS)
def test_status_says_which_release_the_store_was_seeded_for(volumes, fast_env, version):
    env = dict(fast_env, HIGRESS_VERSION=version)
    run_cli("run", volumes=volumes, env=env, check=True)
    code, report, text = _status(volumes, env)
    assert code == 0, text
    assert [r["version"] for r in report["seeded_for"]] == [version]
    assert f"store: seeded for Higress {version} (" in text


@pytest.mark.parametrize("made_by", ["this-release", "before-recorded-settings"])
def test_a_deployment_made_for_2_1_2_upgrades_to_2_2_4_adding_only_what_is_missing(volumes, fast_env, made_by):
    """An upgrade is on purpose: a deployment that recorded its settings (.higress-init/settings.json)
    is refused a new HIGRESS_VERSION until --change-setting HIGRESS_VERSION says so; one made before
    settings were recorded takes it as given."""
    old, new = dict(fast_env, HIGRESS_VERSION="2.1.2"), dict(fast_env, HIGRESS_VERSION="2.2.4")
    run_cli("run", volumes=volumes, env=old, check=True)
    change = []
    if made_by == "before-recorded-settings":
        (volumes / SETTINGS_RECORD).unlink()
    else:
        refused = run_cli("status", volumes=volumes, env=new)
        assert refused.returncode == 2 and "--change-setting HIGRESS_VERSION" in refused.stderr, refused.stderr
        assert "made with HIGRESS_VERSION=2.1.2" in refused.stderr
        change = ["--change-setting", "HIGRESS_VERSION"]
    config = (volumes / "data/configmaps/higress-config.yaml").read_text()
    before = snapshot(volumes)
    if made_by == "before-recorded-settings":
        # before the upgrade run, status under the new version says what is missing and what the run will do
        code, report, text = _status(volumes, new)
        assert code == 1 and [r["version"] for r in report["seeded_for"]] == ["2.1.2"]
        assert "HIGRESS_VERSION=2.2.4: the next run adds the objects it seeds that the store lacks" in \
            " ".join(text.split())
        assert next(r for r in report["files"] if r["name"] == "envoyfilters/higress-http-resolver-cluster")[
            "state"] == "missing"
    plan = run_cli("plan", *change, volumes=volumes, env=new, check=True)
    assert "seed           would create 1, kept 8" in plan.stdout, plan.stdout
    assert snapshot(volumes) == before

    result = run_cli("run", *change, volumes=volumes, env=new, check=True)
    seed = next(line for line in result.stdout.splitlines() if line.startswith("seed "))
    assert seed.split()[1:5] == ["created", "1,", "kept", "8"], seed
    after = snapshot(volumes)
    # every file there before is byte-identical, same mtime and mode; the one new file is the EnvoyFilter
    assert {k: v for k, v in after.items() if k in before} == before
    assert set(after) - set(before) == {RESOLVER}
    want = expected(version="2.2.4")[("envoyfilters", "higress-http-resolver-cluster")]
    assert_matches((volumes / RESOLVER).read_text(), want, RESOLVER)
    # the existing higress-config is kept as 2.1.2 made it (no mcpServer pushed into it)
    assert (volumes / "data/configmaps/higress-config.yaml").read_text() == config
    assert_higress_config(yaml.safe_load(config), "2.1.2")

    code, report, text = _status(volumes, fast_env)   # 2.2.4 now recorded: left out, it is kept
    assert code == 0, text
    assert [r["version"] for r in report["seeded_for"]] == ["2.1.2", "2.2.4"]
    assert "store: seeded for Higress 2.1.2 (" in text and "), then 2.2.4 (" in text
    # a rerun: nothing more
    rerun = run_cli("run", volumes=volumes, env=new, check=True)
    assert "every base object is present" in rerun.stdout and snapshot(volumes) == after


def test_an_object_of_the_release_removed_from_the_store_is_added_again_never_patched(volumes, fast_env):
    run_cli("run", volumes=volumes, env=fast_env, check=True)
    edited = (volumes / RESOLVER).read_text().replace("connect_timeout: 5s", "connect_timeout: 9s")
    (volumes / RESOLVER).write_text(edited)
    run_cli("run", volumes=volumes, env=fast_env, check=True)
    assert (volumes / RESOLVER).read_text() == edited   # present: the user's, never patched
    (volumes / RESOLVER).unlink()
    result = run_cli("run", volumes=volumes, env=fast_env, check=True)
    assert "created 1" in next(line for line in result.stdout.splitlines() if line.startswith("seed "))
    assert "connect_timeout: 5s" in (volumes / RESOLVER).read_text()


def test_a_record_older_than_versions_reads_as_2_1_2(volumes, fast_env):
    """A store seeded by an initializer that predates HIGRESS_VERSION (its record has no releases)."""
    old = dict(fast_env, HIGRESS_VERSION="2.1.2")
    run_cli("run", volumes=volumes, env=old, check=True)
    record = json.loads((volumes / SEEDED).read_text())
    del record["releases"]
    (volumes / SEEDED).write_text(json.dumps(record))
    code, report, text = _status(volumes, old)
    assert code == 0 and report["seeded_for"] == [{"version": "2.1.2", "seeded_at": None}], report["seeded_for"]
    assert "store: seeded for Higress 2.1.2\n" in text + "\n"
    run_cli("run", "--change-setting", "HIGRESS_VERSION", volumes=volumes, env=dict(fast_env, HIGRESS_VERSION="2.2.4"),
            check=True)
    releases = json.loads((volumes / SEEDED).read_text())["releases"]
    assert [r["version"] for r in releases] == ["2.1.2", "2.2.4"] and releases[0]["seeded_at"] is None


# Top-level fields Istio 1.27's MeshConfig has and 1.19's lacks, with a value of each one's type.
ISTIO_1_27_FIELDS = "inboundTrafficPolicy:\n  mode: LOCALHOST\nserviceScopeConfigs:\n- scope: GLOBAL\n"


@pytest.mark.parametrize("version", VERSIONS)
def test_a_stored_mesh_passes_its_release_field_list_and_an_unknown_field_is_refused(volumes, fast_env, version):
    env = dict(fast_env, HIGRESS_VERSION=version)
    run_cli("run", volumes=volumes, env=env, check=True)
    path = volumes / "data/configmaps/higress-config.yaml"
    original = path.read_text()
    cm = yaml.safe_load(original)
    cm["data"]["mesh"] += ISTIO_1_27_FIELDS
    path.write_text(yaml.safe_dump(cm))
    result = run_cli("run", volumes=volumes, env=env)
    if version == "2.2.4":   # Istio 1.27: delivered to pilot
        assert result.returncode == 0, result.stderr
        assert (volumes / "pilot/config/mesh").read_text().endswith(ISTIO_1_27_FIELDS)
    else:                    # Istio 1.19 has neither field: pilot would fall back to its defaults
        assert result.returncode == 3, (result.stdout, result.stderr)
        assert "unknown top-level key(s) inboundTrafficPolicy, serviceScopeConfigs" in result.stderr
        assert "Istio 1.19" in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert ISTIO_1_27_FIELDS not in (volumes / "pilot/config/mesh").read_text()
    cm["data"]["mesh"] += "inboundTrafficPolicyX: {}\n"   # no Istio has it
    path.write_text(yaml.safe_dump(cm))
    result = run_cli("run", volumes=volumes, env=env)
    assert result.returncode == 3 and "inboundTrafficPolicyX" in result.stderr, result.stderr
    assert "inboundTrafficPolicyX" not in (volumes / "pilot/config/mesh").read_text()


def test_every_release_module_is_served_newest_first_and_the_default_is_one():
    """releases.RELEASES names its modules: a v<major>_<minor>_<patch> module left out of it, or put
    out of order, fails here."""
    import pkgutil
    from pathlib import Path

    from higress_init.versions import releases
    folder = Path(releases.__file__).parent
    modules = {m.name for m in pkgutil.iter_modules([str(folder)]) if m.name[:1] == "v" and m.name[1:2].isdigit()}
    assert {"v" + r.version.replace(".", "_") for r in releases.RELEASES} == modules
    versions = [tuple(int(p) for p in r.version.split(".")) for r in releases.RELEASES]
    assert versions == sorted(versions, reverse=True)
    assert releases.DEFAULT in releases.RELEASES_BY_VERSION
