"""Settings: environment variables, each overridable by a command-line flag.

Every value is validated here, before any phase runs, so that bad input never leaves a
half-written volumes directory behind.
"""
from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from higress_init.store.kinds import STORES, store_kind
from higress_init.versions import releases
from higress_init.volume import layout
from higress_init.volume.safefs import Refused, read_secret_file


class SettingsError(Exception):
    """Bad input; the message names the setting and what is allowed (exit code 2)."""


KEY_ALGORITHMS = ("rsa-2048", "rsa-3072", "rsa-4096", "ecdsa-p256", "ecdsa-p384")
STORAGES = tuple(STORES)
LOG_FORMATS = ("text", "json")
ROTATIONS = ("leaf", "intermediate", "root", "finish")
ROLES = ("all", "gateway")
# What a gateway-only host has no use for (its control plane lives on another host): setting one
# there is a mistake, refused rather than ignored.
CONTROL_PLANE_SETTINGS = ("ROTATE", "APISERVER_SANS", "TOKEN_IDENTITIES", "FILE_ROOT_DIR", "APISERVER_HOST_PORT")

# fullmatch everywhere: `$` would also accept a trailing newline
_DNS_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
# the unit is required: a bare number meant days once, and upstream's wait is in seconds
_DURATION = re.compile(r"([0-9]{1,12})([smhd])")
MAX_DURATION = timedelta(days=36500)  # a hundred years: longer overflows dates and means nothing
# The components' folders: the file store (Secrets included) is never put among them.
COMPONENT_DIRS = ("controller", "console", "gateway")
NAME_MAX, PATH_MAX = 255, 4096   # bytes, as Linux counts them: a longer name could never be written
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION_RULE = "a whole number with a unit: s, m, h or d (e.g. 180s, 12h, 365d)"


@dataclass(frozen=True)
class TokenIdentity:
    name: str
    file: str
    service_account: str
    audiences: tuple[str, ...]


# Who gets a token, and where its component reads it. Overridable by TOKEN_IDENTITIES.
DEFAULT_IDENTITIES = (
    TokenIdentity("gateway", layout.GATEWAY_TOKEN, "higress-gateway", ("istio-ca",)),
    TokenIdentity("console", layout.CONSOLE_TOKEN, "higress-console", ("istio-ca",)),
    TokenIdentity("controller", layout.CONTROLLER_TOKEN, "higress-controller", ("istio-ca",)),
)


@dataclass(frozen=True)
class Setting:
    env: str
    default: str | None
    help: str
    secret: bool = False
    flag: str | None = None
    # One set of settings per deployment: the effective value, as text that reads back to the same
    # setting, recorded in .higress-init/settings.json after each run and used where a later run,
    # rotate, status or watch leaves the setting out; a different value is refused unless
    # --change-setting NAME. PER_RUN: a setting that may differ from run to run (or a secret).
    recorded: object = None


PER_RUN = "per run"


def _duration_text(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit in ("d", "h", "m"):
        if seconds % _DURATION_UNITS[unit] == 0:
            return f"{seconds // _DURATION_UNITS[unit]}{unit}"
    return f"{seconds}s"


def _identities_text(s) -> str:
    """TOKEN_IDENTITIES as given; empty for the default set (which follows GATEWAY_SERVICE_ACCOUNT)."""
    if s.token_identities == _token_identities(None, s.gateway_service_account):
        return ""
    return ",".join(f"{i.name}={i.file}:{i.service_account}:{'+'.join(i.audiences)}" for i in s.token_identities)


# The one list of settings: the CLI builds its flags from it, the README and
# env/initializer.env document it, and a test checks they all agree.
SETTINGS: tuple[Setting, ...] = (
    Setting("VOLUMES_ROOT", "/mnt/volumes", "directory holding every component's volume", flag="--volumes", recorded=PER_RUN),
    Setting("CONFIG_STORAGE", None, "where the base config is seeded: nacos or file (default: nacos when NACOS_SERVER_URL is set, else file)", flag="--storage", recorded=lambda s: s.config_storage),
    Setting("FILE_ROOT_DIR", None, "root of the apiserver's file store, inside the volumes root; a relative path is taken from it (default: <VOLUMES_ROOT>/data)", recorded=lambda s: s.file_root_dir.relative_to(s.volumes_root).as_posix()),
    Setting("NACOS_SERVER_URL", None, "Nacos server URL(s), comma-separated, e.g. http://nacos:8848/nacos", recorded=lambda s: ','.join(sorted(s.nacos_servers))),  # the set, not the order of preference
    Setting("NACOS_NS", "higress-system", "Nacos namespace id", recorded=lambda s: s.nacos_namespace),
    Setting("NACOS_USERNAME", None, "Nacos user (log in when set)", secret=True, recorded=PER_RUN),
    Setting("NACOS_PASSWORD", None, "Nacos password", secret=True, recorded=PER_RUN),
    Setting("NACOS_DATA_ENC_KEY", None, "32-character key for Secrets kept in Nacos (default: generated once)", secret=True, recorded=PER_RUN),
    Setting("NACOS_WAIT_TIMEOUT", "180s", "how long to wait for Nacos to become ready", recorded=PER_RUN),
    Setting("APISERVER_URL", "https://apiserver:8443", "apiserver URL written into kube/config", recorded=lambda s: s.apiserver_url),
    Setting("APISERVER_HOST_PORT", "8443", "port of the host's loopback where compose publishes the apiserver "
                                           "(127.0.0.1:PORT); kube/host.config reaches it from the host",
            recorded=lambda s: str(s.apiserver_host_port)),
    Setting("APISERVER_SANS", "", "extra DNS names or IPs for the apiserver certificate, comma-separated", recorded=lambda s: ','.join(s.apiserver_sans)),
    Setting("CA_KEY_ALGORITHM", "rsa-4096", "key algorithm of the CAs: " + ", ".join(KEY_ALGORITHMS), recorded=lambda s: s.ca_key_algorithm),
    Setting("LEAF_KEY_ALGORITHM", "rsa-2048", "key algorithm of leaf certificates: " + ", ".join(KEY_ALGORITHMS), recorded=lambda s: s.leaf_key_algorithm),
    Setting("CA_VALIDITY", "3650d", "lifetime of the root CAs (number with unit s, m, h or d)", recorded=lambda s: _duration_text(s.ca_validity)),
    Setting("INTERMEDIATE_VALIDITY", "730d", "lifetime of the pilot intermediate CA", recorded=lambda s: _duration_text(s.intermediate_validity)),
    Setting("CERT_VALIDITY", "365d", "lifetime of leaf certificates", recorded=lambda s: _duration_text(s.cert_validity)),
    Setting("RENEW_BEFORE", "30d", "re-issue a leaf certificate or token this long before it expires; status warns inside it", recorded=lambda s: _duration_text(s.renew_before)),
    Setting("TRUST_DOMAIN", "cluster.local", "SPIFFE trust domain", recorded=lambda s: s.trust_domain),
    Setting("HIGRESS_NAMESPACE", "higress-system", "Kubernetes namespace of the Higress components", recorded=lambda s: s.namespace),
    Setting("GATEWAY_SERVICE_ACCOUNT", "higress-gateway", "service account in the gateway's SPIFFE identity", recorded=lambda s: s.gateway_service_account),
    Setting("TOKEN_ISSUER", "https://higress-init.higress-system.svc", "issuer (iss) of component tokens; jwks_uri is <issuer>/.well-known/jwks.json", recorded=lambda s: s.token_issuer),
    Setting("TOKEN_KEY_ALGORITHM", "rsa-2048", "token signing key: rsa-2048, rsa-3072, rsa-4096, ecdsa-p256 or ecdsa-p384", recorded=lambda s: s.token_key_algorithm),
    Setting("TOKEN_VALIDITY", "365d", "lifetime of component tokens", recorded=lambda s: _duration_text(s.token_validity)),
    Setting("TOKEN_IDENTITIES", None, "tokens to issue, comma-separated name=file:serviceaccount:audience[+audience] (default: gateway, console, controller)", recorded=_identities_text),
    Setting("VOLUMES_UID", None, "owner uid of written files (default: unchanged)", recorded=lambda s: '' if s.volumes_uid is None else str(s.volumes_uid)),
    Setting("VOLUMES_GID", None, "owner gid of written files (default: unchanged)", recorded=lambda s: '' if s.volumes_gid is None else str(s.volumes_gid)),
    Setting("LOG_FORMAT", "text", "text or json (one JSON object a line)", flag="--log-format", recorded=PER_RUN),
    Setting("ROLE", "all", "what this host runs: all (control plane and gateway) or gateway (a gateway-only host "
                           "joining the deployment through Nacos; needs Nacos storage and the data key)", flag="--role", recorded=lambda s: s.role),
    Setting("POD_NAME", "higress-gateway", "this host's gateway pod name, unique per host: in gateway/podinfo/labels "
                                           "and the gateway certificate's subject", recorded=lambda s: s.pod_name),
    Setting("DEPLOYED_BY", None, "the compose file that runs this deployment, set by it (compose/docker-compose.yml "
                                 "or compose/docker-compose.gateway.yml); empty: by hand. `make status` and `make "
                                 "rotate` go through it", recorded=lambda s: s.deployed_by),
    Setting("HIGRESS_VERSION", releases.DEFAULT, "the Higress release the deployment runs, which decides the seeded "
                                                 "objects and the mesh fields pilot accepts: "
                                                 + ", ".join(releases.RELEASES_BY_VERSION),
            recorded=lambda s: s.higress_version),   # an upgrade is on purpose: --change-setting HIGRESS_VERSION
    Setting("ROTATE", None, "rotate first, then run: leaf, intermediate, root or finish (for `docker compose run -e ROTATE=...`)", recorded=PER_RUN),
    Setting("BACKUP_KEEP", "10", "how many runs' backup/<time>/ folders (what each run replaced) to keep; older ones "
                                 "are removed, and the run says so (0: keep all)", recorded=PER_RUN),
    Setting("METRICS_PORT", None, "port `watch` serves Prometheus metrics on, at /metrics (0 or empty: off; "
                                  "compose sets 9793 on the stack's network only)", recorded=PER_RUN),
)
SETTINGS_BY_ENV = {s.env: s for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    volumes_root: Path
    config_storage: str
    file_root_dir: Path
    nacos_servers: tuple[str, ...]
    nacos_namespace: str
    nacos_username: str | None
    nacos_password: str | None
    nacos_data_key: bytes | None
    nacos_wait_timeout: timedelta
    apiserver_url: str
    apiserver_sans: tuple[str, ...]
    ca_key_algorithm: str
    leaf_key_algorithm: str
    ca_validity: timedelta
    intermediate_validity: timedelta
    cert_validity: timedelta
    renew_before: timedelta
    trust_domain: str
    namespace: str
    gateway_service_account: str
    volumes_uid: int | None
    volumes_gid: int | None
    log_format: str
    token_issuer: str
    token_key_algorithm: str
    token_validity: timedelta
    token_identities: tuple[TokenIdentity, ...]
    rotate: str | None
    role: str = "all"
    pod_name: str = "higress-gateway"
    metrics_port: int | None = None   # watch's Prometheus metrics; None: off
    backup_keep: int = 10             # runs kept under backup/; 0: all
    higress_version: str = releases.DEFAULT
    apiserver_host_port: int = 8443
    deployed_by: str = ""

    @property
    def gateway_spiffe_id(self) -> str:
        return f"spiffe://{self.trust_domain}/ns/{self.namespace}/sa/{self.gateway_service_account}"


def _raw(env: dict, overrides: dict, name: str, recorded: dict | None = None) -> str | None:
    """The value of a setting: flag, then NAME, then NAME_FILE (secrets), then the deployment's
    recorded value, then default."""
    value = _given(env, overrides, name)
    if value is None and recorded and recorded.get(name):
        return recorded[name]
    return SETTINGS_BY_ENV[name].default if value is None else value


def _given(env: dict, overrides: dict, name: str) -> str | None:
    """The value this run was given (flag, NAME, NAME_FILE), None when it was left out."""
    if overrides.get(name) is not None:
        return overrides[name]
    value = env.get(name)
    setting = SETTINGS_BY_ENV[name]
    if setting.secret:
        file_name = env.get(name + "_FILE")
        if file_name:
            if value:
                raise SettingsError(f"{name} and {name}_FILE are both set: set only one")
            value = _secret_file(name, file_name)
    return None if value is None or value == "" else value


def _secret_file(name: str, file_name: str) -> str:
    try:
        data = read_secret_file(file_name)
    except OSError as err:
        raise SettingsError(f"{name}_FILE: cannot read {file_name}: {err.strerror}") from None
    except Refused:
        raise SettingsError(f"{name}_FILE: {file_name} is larger than 64 KiB") from None
    try:
        return data.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise SettingsError(f"{name}_FILE: {file_name} is not UTF-8 text") from None


def parse_duration(name: str, text: str) -> timedelta:
    match = _DURATION.fullmatch(text.strip())
    if re.fullmatch(r"[0-9]+", text.strip()):
        raise SettingsError(f"{name}={text!r}: no unit; a duration is {DURATION_RULE}")
    if not match or int(match.group(1)) == 0 or \
            int(match.group(1)) * _DURATION_UNITS[match.group(2)] > MAX_DURATION.total_seconds():
        raise SettingsError(f"{name}={text!r}: expected a positive duration, {DURATION_RULE}, at most {MAX_DURATION.days}d")
    return timedelta(seconds=int(match.group(1)) * _DURATION_UNITS[match.group(2)])


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    value = value.strip().lower()
    if value not in allowed:
        raise SettingsError(f"{name}={value!r}: allowed values are {', '.join(allowed)}")
    return value


def _dns_name(name: str, value: str) -> str:
    value = value.strip().lower()
    labels = value.split(".")
    if len(value) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        raise SettingsError(f"{name}: {value!r} is not a valid DNS name (lower-case letters, digits, '-' and '.')")
    return value


def _san(value: str) -> str:
    value = value.strip()
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        address = None
    if address is not None:
        if getattr(address, "scope_id", None):
            raise SettingsError(f"APISERVER_SANS: {value!r}: a scoped IPv6 address (%zone) can't be in a certificate; "
                                "give the address without the zone")
        return str(address)
    if value.startswith("*."):
        return "*." + _dns_name("APISERVER_SANS", value[2:])
    return _dns_name("APISERVER_SANS", value)


def _nacos_url(text: str) -> str:
    """Normalise one Nacos URL to http://host:port/nacos (the context path the API lives under).

    The apiserver reads the same value (--nacos-server), so what it would misread is refused here:
    it speaks plain http only, takes a URL without a port as port 80 and does not trim spaces."""
    if text != text.strip():
        raise SettingsError(f"NACOS_SERVER_URL: {text!r}: no spaces around the commas; the apiserver reads this "
                            "value as it is and would not find that server")
    url = text
    parts = urlsplit(url)
    if parts.scheme == "https":
        raise SettingsError(f"NACOS_SERVER_URL: {url!r}: https is not allowed; the apiserver talks to Nacos over "
                            "plain http only and would refuse this URL (e.g. http://nacos:8848/nacos)")
    if parts.scheme != "http" or not parts.hostname:
        raise SettingsError(f"NACOS_SERVER_URL: {url!r} is not an http URL like http://nacos:8848/nacos")
    try:
        port = parts.port
    except ValueError:
        raise SettingsError(f"NACOS_SERVER_URL: {url!r} has an invalid port") from None
    if port is None:
        raise SettingsError(f"NACOS_SERVER_URL: {url!r} has no port; the apiserver would use port 80, not Nacos's "
                            "8848: write it out, e.g. http://nacos:8848/nacos")
    path = parts.path.rstrip("/")
    if path not in ("", "/nacos"):
        raise SettingsError(f"NACOS_SERVER_URL: {url!r}: the path must be empty or /nacos")
    if parts.query or parts.fragment or parts.username:
        raise SettingsError(f"NACOS_SERVER_URL: {url!r}: no query, fragment or user info allowed (use NACOS_USERNAME)")
    if ":" not in parts.hostname:
        _dns_name(f"NACOS_SERVER_URL: {url!r}: host", parts.hostname)   # a resolver's limits, not a raw error
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    return f"http://{host}:{port}/nacos"


def _listen_port(name: str, value: str | None) -> int | None:
    """A TCP port to listen on; 0 or empty: off."""
    if value is None or not value.strip():
        return None
    if not re.fullmatch(r"[0-9]{1,5}", value.strip()) or int(value) > 65535:
        raise SettingsError(f"{name}={value!r}: expected a port from 1 to 65535, or 0 (or empty) for off")
    return int(value) or None


def _count(name: str, value: str) -> int:
    if not re.fullmatch(r"[0-9]{1,6}", value.strip()):
        raise SettingsError(f"{name}={value!r}: expected a whole number from 0 to 999999 (0: keep all)")
    return int(value)


def _compose_file(name: str, value: str | None) -> str:
    if not value:
        return ""
    if not re.fullmatch(r"compose/[A-Za-z0-9][A-Za-z0-9._-]{0,100}\.ya?ml", value.strip()):
        raise SettingsError(f"{name}={value!r}: expected the compose file's path from the repository root, "
                            "e.g. compose/docker-compose.yml, or nothing")
    return value.strip()


def _port(name: str, value: str) -> int:
    if not re.fullmatch(r"[0-9]{1,5}", value.strip()) or not 1 <= int(value) <= 65535:
        raise SettingsError(f"{name}={value!r}: expected a port number from 1 to 65535")
    return int(value)


def _owner(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    if not re.fullmatch(r"[0-9]{1,10}", value.strip()):
        raise SettingsError(f"{name}={value!r}: expected a numeric id from 0 to 2147483647")
    number = int(value.strip())
    if number > 2**31 - 1:
        raise SettingsError(f"{name}={value!r}: expected a numeric id from 0 to 2147483647")
    return number


def recorded_text(settings: Settings) -> dict[str, str]:
    """The deployment's settings as recorded: every recorded setting's effective value as text."""
    return {s.env: s.recorded(settings) for s in SETTINGS if callable(s.recorded)}


def volumes_root_of(env: dict | None = None, overrides: dict | None = None) -> Path:
    env = dict(os.environ if env is None else env)
    volumes_text = _raw(env, overrides or {}, "VOLUMES_ROOT")
    if not volumes_text or not volumes_text.strip() or "\0" in volumes_text:
        raise SettingsError("VOLUMES_ROOT: empty; expected the directory holding the volumes, e.g. /mnt/volumes")
    try:
        volumes_root = Path(os.path.normpath(Path(volumes_text).absolute()))
    except FileNotFoundError:   # relative to a working directory deleted under the command
        raise SettingsError(f"VOLUMES_ROOT={volumes_text}: a relative path, and the working directory no longer "
                            "exists: give an absolute path") from None
    if volumes_root == Path("/"):
        raise SettingsError("VOLUMES_ROOT=/: expected a directory of its own, e.g. /mnt/volumes")
    if volumes_root.exists() and not volumes_root.is_dir():
        raise SettingsError(f"VOLUMES_ROOT={volumes_root}: exists and is not a directory")
    return volumes_root


def _defaulted(name: str, text: str | None) -> str:
    """The value of a setting that has a default: never None."""
    assert text is not None, f"{name}: a setting with a default"
    return text


def load(env: dict | None = None, overrides: dict | None = None, recorded: dict | None = None,
         change: tuple[str, ...] = ()) -> Settings:
    """The settings of this run. `recorded`: the deployment's (deployment.read), used where a
    setting is left out; a different value given for one of them is refused unless it is named in
    `change` (--change-setting)."""
    env = dict(os.environ if env is None else env)
    overrides = overrides or {}
    recorded = {k: v for k, v in (recorded or {}).items()
                if k in SETTINGS_BY_ENV and callable(SETTINGS_BY_ENV[k].recorded) and isinstance(v, str)}
    for name in change:
        if name not in SETTINGS_BY_ENV or not callable(SETTINGS_BY_ENV[name].recorded):
            raise SettingsError(f"--change-setting {name}: not a recorded setting; allowed: "
                                + ", ".join(s.env for s in SETTINGS if callable(s.recorded)))
    get = lambda name: _raw(env, overrides, name, recorded)  # noqa: E731
    given = lambda name: _given(env, overrides, name)  # noqa: E731
    value = lambda name: _defaulted(name, get(name))  # noqa: E731 (settings that have a default)
    volumes_root = volumes_root_of(env, overrides)

    nacos_raw = get("NACOS_SERVER_URL")
    servers = tuple(_nacos_url(u) for u in nacos_raw.split(",") if u.strip()) if nacos_raw else ()
    if nacos_raw is not None and not servers:
        raise SettingsError("NACOS_SERVER_URL: no server URL given; expected e.g. http://nacos:8848/nacos")
    storage_raw = get("CONFIG_STORAGE")
    storage = _choice("CONFIG_STORAGE", storage_raw, STORAGES) if storage_raw else ("nacos" if servers else "file")
    if STORES[storage].remote and not servers:
        raise SettingsError("CONFIG_STORAGE=nacos needs NACOS_SERVER_URL, e.g. http://nacos:8848/nacos")

    username, password = get("NACOS_USERNAME"), get("NACOS_PASSWORD")
    if bool(username) != bool(password):
        raise SettingsError("NACOS_USERNAME and NACOS_PASSWORD: set both or neither")

    data_key_text = get("NACOS_DATA_ENC_KEY")
    data_key = None
    if data_key_text is not None:
        data_key = data_key_text.encode()
        if len(data_key) != 32 or not data_key_text.isprintable() or not data_key_text.isascii():
            raise SettingsError("NACOS_DATA_ENC_KEY: expected exactly 32 printable ASCII characters (an AES-256 key)")

    file_root_dir = _file_root(get("FILE_ROOT_DIR"), volumes_root)
    apiserver_url = _https_url("APISERVER_URL", value("APISERVER_URL"), example="https://apiserver:8443")
    rotate_text = get("ROTATE")

    settings = Settings(
        volumes_root=volumes_root,
        config_storage=storage,
        file_root_dir=file_root_dir,
        nacos_servers=servers,
        nacos_namespace=_nacos_namespace(value("NACOS_NS")),
        nacos_username=username,
        nacos_password=password,
        nacos_data_key=data_key,
        nacos_wait_timeout=parse_duration("NACOS_WAIT_TIMEOUT", value("NACOS_WAIT_TIMEOUT")),
        apiserver_url=apiserver_url,
        apiserver_sans=tuple(_san(s) for s in value("APISERVER_SANS").split(",") if s.strip()),
        ca_key_algorithm=_choice("CA_KEY_ALGORITHM", value("CA_KEY_ALGORITHM"), KEY_ALGORITHMS),
        leaf_key_algorithm=_choice("LEAF_KEY_ALGORITHM", value("LEAF_KEY_ALGORITHM"), KEY_ALGORITHMS),
        ca_validity=parse_duration("CA_VALIDITY", value("CA_VALIDITY")),
        intermediate_validity=parse_duration("INTERMEDIATE_VALIDITY", value("INTERMEDIATE_VALIDITY")),
        cert_validity=parse_duration("CERT_VALIDITY", value("CERT_VALIDITY")),
        renew_before=parse_duration("RENEW_BEFORE", value("RENEW_BEFORE")),
        trust_domain=_dns_name("TRUST_DOMAIN", value("TRUST_DOMAIN")),
        namespace=_k8s_name("HIGRESS_NAMESPACE", value("HIGRESS_NAMESPACE")),
        gateway_service_account=_k8s_name("GATEWAY_SERVICE_ACCOUNT", value("GATEWAY_SERVICE_ACCOUNT")),
        volumes_uid=_owner("VOLUMES_UID", get("VOLUMES_UID")),
        volumes_gid=_owner("VOLUMES_GID", get("VOLUMES_GID")),
        log_format=_choice("LOG_FORMAT", value("LOG_FORMAT"), LOG_FORMATS),
        token_issuer=_https_url("TOKEN_ISSUER", value("TOKEN_ISSUER")),
        token_key_algorithm=_choice("TOKEN_KEY_ALGORITHM", value("TOKEN_KEY_ALGORITHM"), KEY_ALGORITHMS),
        token_validity=parse_duration("TOKEN_VALIDITY", value("TOKEN_VALIDITY")),
        token_identities=_token_identities(get("TOKEN_IDENTITIES"), gateway_account=value("GATEWAY_SERVICE_ACCOUNT")),
        rotate=_choice("ROTATE", rotate_text, ROTATIONS) if rotate_text else None,
        role=_choice("ROLE", value("ROLE"), ROLES),
        pod_name=_k8s_name("POD_NAME", value("POD_NAME")),
        metrics_port=_listen_port("METRICS_PORT", get("METRICS_PORT")),
        backup_keep=_count("BACKUP_KEEP", value("BACKUP_KEEP")),
        higress_version=_choice("HIGRESS_VERSION", value("HIGRESS_VERSION"), tuple(releases.RELEASES_BY_VERSION)),
        apiserver_host_port=_port("APISERVER_HOST_PORT", value("APISERVER_HOST_PORT")),
        deployed_by=_compose_file("DEPLOYED_BY", get("DEPLOYED_BY")),
    )
    for identity in settings.token_identities:   # a backup copy goes to backup/<stamp>/<file>
        _fits("TOKEN_IDENTITIES", identity.file, volumes_root / identity.file, room=64)
    if settings.role == "gateway":
        _check_gateway_role(settings, given)
    if settings.renew_before >= settings.cert_validity:
        raise SettingsError(
            f"RENEW_BEFORE={get('RENEW_BEFORE')}: must be shorter than CERT_VALIDITY={get('CERT_VALIDITY')}")
    if settings.renew_before >= settings.token_validity:
        raise SettingsError(
            f"RENEW_BEFORE={get('RENEW_BEFORE')}: must be shorter than TOKEN_VALIDITY={get('TOKEN_VALIDITY')}")
    if settings.intermediate_validity > settings.ca_validity:
        raise SettingsError("INTERMEDIATE_VALIDITY: must not be longer than CA_VALIDITY")
    # a leaf can't outlive the CA that issues it (the gateway's is the intermediate)
    if settings.cert_validity > settings.intermediate_validity:
        raise SettingsError(f"CERT_VALIDITY={get('CERT_VALIDITY')}: must not be longer than "
                            f"INTERMEDIATE_VALIDITY={get('INTERMEDIATE_VALIDITY')} (a leaf can't outlive its CA)")
    # a CA is reported for renewal RENEW_BEFORE ahead: inside its whole lifetime, nothing could be healthy
    if settings.renew_before >= settings.intermediate_validity:
        raise SettingsError(f"RENEW_BEFORE={get('RENEW_BEFORE')}: must be shorter than "
                            f"INTERMEDIATE_VALIDITY={get('INTERMEDIATE_VALIDITY')} and CA_VALIDITY")
    _check_drift(settings, recorded, given, change)
    return settings


def _check_drift(settings: Settings, recorded: dict, given, change) -> None:
    """A setting given with a value other than the deployment's recorded one is refused (leaving it
    out keeps the recorded value), unless named in --change-setting."""
    now = recorded_text(settings)
    for name, before in recorded.items():
        if given(name) is None or name in change or now[name] == before:
            continue
        raise SettingsError(f"{name}={now[name] or '(unset)'}: this deployment was made with {name}="
                            f"{before or '(unset)'} ({layout.DEPLOYMENT_SETTINGS}); leave {name} out to keep it, "
                            f"or change it on purpose: higress-init run|rotate --change-setting {name}")


def _file_root(text: str | None, volumes_root: Path) -> Path:
    """FILE_ROOT_DIR: inside the volumes root (relative paths are taken from it), so the file
    store gets the same no-follow treatment as every volume."""
    if not text:
        return volumes_root / "data"
    path = Path(text)
    if ".." in path.parts or "\0" in text:
        raise SettingsError(f"FILE_ROOT_DIR={text!r}: no '..' allowed; expected a directory inside VOLUMES_ROOT")
    path = Path(os.path.normpath(volumes_root / path))
    if not path.is_relative_to(volumes_root) or path == volumes_root:
        raise SettingsError(f"FILE_ROOT_DIR={text!r}: must be a directory inside VOLUMES_ROOT={volumes_root} "
                            "(e.g. data)")
    rel = path.relative_to(volumes_root).as_posix()
    if any(rel == d or rel.startswith(d + "/") for d in layout.MANAGED_DIRS + COMPONENT_DIRS if d != "data"):
        raise SettingsError(f"FILE_ROOT_DIR={text!r}: {rel} holds the initializer's or a component's own files; "
                            "choose e.g. data")
    _fits("FILE_ROOT_DIR", text, path, room=300)   # <plural>/<a 253-character name>.yaml below it
    return path


def _fits(name: str, text: str, path: Path, room: int) -> None:
    """Every part of `path` within NAME_MAX bytes and the whole, with `room` to spare (what goes
    below it, or its copy under backup/<stamp>/), within PATH_MAX: checked before anything is
    written, as a journal entry naming a longer one could never be applied."""
    if any(len(part.encode()) > NAME_MAX for part in path.parts) or len(str(path).encode()) + room >= PATH_MAX:
        raise SettingsError(f"{name}={text!r}: too long; each name at most {NAME_MAX} bytes, the whole path under "
                            f"{PATH_MAX}")


def _check_gateway_role(settings: Settings, get) -> None:
    """A gateway-only host takes its CA and config from Nacos, encrypted with the deployment's data key."""
    if not store_kind(settings).shares_ca:
        raise SettingsError("ROLE=gateway needs Nacos storage: set NACOS_SERVER_URL to the deployment's Nacos "
                            "(CONFIG_STORAGE=nacos); a gateway-only host joins through it")
    for name in CONTROL_PLANE_SETTINGS:
        if get(name):
            raise SettingsError(f"{name} is set, but ROLE=gateway has no use for it (it belongs to the control-plane "
                                "host, ROLE=all): unset it")
    key_file = settings.volumes_root / layout.DATA_KEY
    if settings.nacos_data_key is None and not key_file.is_file():
        raise SettingsError("ROLE=gateway needs the deployment's data key: set NACOS_DATA_ENC_KEY (or "
                            f"NACOS_DATA_ENC_KEY_FILE) to the control-plane host's api/nacos.key, or copy that file "
                            f"to {key_file}")


def _k8s_name(name: str, value: str) -> str:
    value = value.strip()
    if not _DNS_LABEL.fullmatch(value):
        raise SettingsError(f"{name}={value!r}: expected a Kubernetes name (lower-case letters, digits and '-', at most 63)")
    return value


def _nacos_namespace(value: str) -> str:
    value = value.strip()
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,128}", value):
        raise SettingsError(f"NACOS_NS={value!r}: expected 1 to 128 letters, digits, '_' or '-'")
    return value


def _https_url(name: str, value: str, example: str = "https://issuer.example") -> str:
    value = value.strip().rstrip("/")
    allowed = f"expected an https URL like {example}, with a port from 1 to 65535 and no user info, query or fragment"
    if not value.isprintable() or " " in value or not value.isascii():
        raise SettingsError(f"{name}={value!r}: {allowed}")
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        raise SettingsError(f"{name}={value!r}: {allowed}") from None
    if parts.scheme != "https" or not parts.hostname or port == 0 or "?" in value or "#" in value or "@" in parts.netloc:
        raise SettingsError(f"{name}={value!r}: {allowed}")
    return value


def _token_identities(text: str | None, gateway_account: str):
    """TOKEN_IDENTITIES: name=file:serviceaccount:audience[+audience], comma-separated."""
    if not text:
        return tuple(i if i.name != "gateway" else TokenIdentity(i.name, i.file, gateway_account.strip(), i.audiences)
                     for i in DEFAULT_IDENTITIES)
    allowed = "name=file:serviceaccount:audience[+audience], e.g. gateway=gateway/tokens/istio-token:higress-gateway:istio-ca"
    identities = []
    for entry in (e.strip() for e in text.split(",") if e.strip()):
        name, _, rest = entry.partition("=")
        fields = rest.split(":")
        if not _DNS_LABEL.fullmatch(name) or len(fields) != 3:
            raise SettingsError(f"TOKEN_IDENTITIES: {entry!r}: expected {allowed}")
        file, account, audiences = fields
        path = Path(file)
        rel = path.as_posix()
        if not file or path.is_absolute() or ".." in path.parts or "." in file.split("/") or "//" in file or \
                not file.isprintable() or any(p.startswith(layout.STATE_DIR) for p in path.parts) or \
                any(rel == d or rel.startswith(d + "/") for d in layout.MANAGED_DIRS):
            raise SettingsError(f"TOKEN_IDENTITIES: {entry!r}: the file must be a plain relative path inside the volumes, "
                                f"not under {', '.join(d + '/' for d in layout.MANAGED_DIRS)} (the initializer's own files)")
        auds = tuple(a for a in audiences.split("+") if a)
        if not auds:
            raise SettingsError(f"TOKEN_IDENTITIES: {entry!r}: at least one audience is needed")
        identities.append(TokenIdentity(name, file, _k8s_name("TOKEN_IDENTITIES", account), auds))
    if len({i.name for i in identities}) != len(identities) or len({i.file for i in identities}) != len(identities):
        raise SettingsError("TOKEN_IDENTITIES: names and files must be unique")
    return tuple(identities)
