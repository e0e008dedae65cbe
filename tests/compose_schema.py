"""The compose file as Docker Compose would see it (variables from compose/.env, one profile
set at a time), and its check against the compose-spec schema that check-jsonschema ships.

Run directly (`make lint`) it validates every profile combination and exits non-zero on error.
"""
from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "compose/docker-compose.yml"
COMPOSE_ENV = REPO / "compose/.env"
PROFILE_SETS = ((), ("nacos",), ("plugin-server",), ("nacos", "plugin-server"))
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}")


def parse_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; comments and blank lines ignored; a duplicate or malformed line is an error."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"{path}:{number}: not KEY=VALUE: {line!r}")
        if key in values:
            raise ValueError(f"{path}:{number}: {key} is defined twice")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]   # quoted as compose's dotenv reads it (single quotes: no interpolation)
        values[key] = value
    return values


def variables_used(text: str) -> list[tuple[str, str | None]]:
    """(name, default or None) for every ${...} in the compose file."""
    return [(m.group(1), m.group(3) if m.group(2) else None) for m in _VAR.finditer(text)]


def interpolate(text: str, env: dict[str, str]) -> str:
    def value(match):
        name, op, default = match.group(1), match.group(2), match.group(3)
        current = env.get(name)
        if op == ":-" and not current:
            return default
        if op == "-" and current is None:
            return default
        return current or ""
    return _VAR.sub(value, text)


def model(profiles=(), overrides: dict | None = None) -> dict:
    """The effective compose model for a set of active profiles."""
    env = parse_env_file(COMPOSE_ENV)
    env.setdefault("NACOS_AUTH_ENV_FILE", str(nacos_auth_file()))
    env.update(overrides or {})
    doc = yaml.safe_load(interpolate(COMPOSE_FILE.read_text(), env))
    doc = copy.deepcopy(doc)
    active = {name for name, svc in doc["services"].items()
              if not svc.get("profiles") or set(svc["profiles"]) & set(profiles)}
    doc["services"] = {n: s for n, s in doc["services"].items() if n in active}
    for svc in doc["services"].values():
        deps = svc.get("depends_on") or {}
        for dep in [d for d in deps if d not in active]:
            if deps[dep].get("required", True):
                raise ValueError(f"a service depends on inactive {dep} without required: false")
            del deps[dep]
        if not deps:
            svc.pop("depends_on", None)
    return doc


# The components as their images run them: the one table the wiring and authentication tests are driven
# by, together with each one's mounts from the compose file. uid: the user the image runs as (its group
# has the same number); root reads any file (CAP_DAC_OVERRIDE, on in Docker by default).
COMPONENT_USERS = {  # service: (image repository, uid)
    "apiserver": ("api-server", 0),
    "controller": ("higress", 1337),
    "pilot": ("pilot", 1337),
    "gateway": ("gateway", 0),
    "console": ("console", 0),
}
# The compose variable naming each service's image (a full reference; versions.py holds each release's set).
IMAGE_VARIABLES = {"apiserver": "HIGRESS_API_SERVER_IMAGE", "controller": "HIGRESS_CONTROLLER_IMAGE",
                   "pilot": "HIGRESS_PILOT_IMAGE", "gateway": "HIGRESS_GATEWAY_IMAGE",
                   "console": "HIGRESS_CONSOLE_IMAGE", "plugin-server": "HIGRESS_PLUGIN_SERVER_IMAGE",
                   "nacos": "NACOS_IMAGE"}


def release_env_files(version: str) -> list[Path]:
    """The --env-file list selecting a release's image set: compose/.env (the default release's), then
    compose/higress-<version>.env for any other."""
    extra = REPO / f"compose/higress-{version}.env"
    return [COMPOSE_ENV] + ([extra] if extra.is_file() else [])


_NACOS_AUTH: list[Path] = []


def nacos_auth_file() -> Path:
    """The built-in Nacos's generated secrets, made by the Makefile's own rule (as `make up` makes
    compose/nacos-auth.env), here into a temporary folder: the tests never write into the repo."""
    if not _NACOS_AUTH:
        path = Path(tempfile.mkdtemp(prefix="nacos-auth-")) / "nacos-auth.env"
        subprocess.run(["make", "-s", "-C", str(REPO), f"NACOS_AUTH_ENV={path}", str(path)], check=True,
                       capture_output=True)
        _NACOS_AUTH.append(path)
    return _NACOS_AUTH[0]

# The real compose CLI plugin (`make test` builds it pinned into the tools cache); `config` needs no engine.
COMPOSE_VERSION = "2.40.3"
COMPOSE_PLUGIN = Path(os.environ.get("COMPOSE_PLUGIN") or
                      Path.home() / f".cache/higress-init/compose-v{COMPOSE_VERSION}/cli-plugins/docker-compose")


def compose_config(env: dict[str, str] | None = None, env_files: list[Path] | None = None,
                   compose_file: Path = COMPOSE_FILE) -> subprocess.CompletedProcess:
    """`docker compose config --format json` as a user runs it from the repo root, with `env` as the
    shell environment's compose variables (they win over the env files, as in compose itself) and
    `env_files` as its --env-file list (default: compose/.env)."""
    if not COMPOSE_PLUGIN.is_file():
        raise FileNotFoundError(f"the compose CLI plugin is not at {COMPOSE_PLUGIN}: `make test` builds it "
                                f"(needs Go), or set COMPOSE_PLUGIN")
    docker = shutil.which("docker")
    if not docker:
        raise FileNotFoundError("the docker CLI is not installed (apt-get install docker-ce-cli or docker.io); "
                                "`docker compose config` needs no engine")
    env_files = env_files or [COMPOSE_ENV]
    compose_vars = {name for name, _ in variables_used(compose_file.read_text())} | \
        {name for f in env_files for name in parse_env_file(f)}
    full_env = {k: v for k, v in os.environ.items() if k not in compose_vars and not k.startswith("COMPOSE_")}
    full_env["NACOS_AUTH_ENV_FILE"] = str(nacos_auth_file())
    full_env.update(env or {})
    full_env["DOCKER_CONFIG"] = str(COMPOSE_PLUGIN.parent.parent)
    return subprocess.run([docker, "compose", "-f", str(compose_file),
                           *[arg for f in env_files for arg in ("--env-file", str(f))],
                           "config", "--format", "json"], capture_output=True, text=True, env=full_env,
                          cwd=REPO, timeout=120)


def validate(document: dict) -> subprocess.CompletedProcess:
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        yaml.safe_dump(document, f)
    checker = Path(sys.executable).with_name("check-jsonschema")
    return subprocess.run([str(checker), "--builtin-schema", "vendor.compose-spec", f.name],
                          capture_output=True, text=True)


def main() -> int:
    failed = 0
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    results = [("as written", validate(raw))] + [(f"profiles {list(p)}", validate(model(p))) for p in PROFILE_SETS]
    for label, result in results:
        print(f"compose-spec, {label}: {'ok' if result.returncode == 0 else 'FAILED'}")
        if result.returncode:
            failed = 1
            print(result.stdout + result.stderr)
    return failed


if __name__ == "__main__":
    sys.exit(main())
