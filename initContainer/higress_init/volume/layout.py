"""The volume layout: every path the product writes, relative to VOLUMES_ROOT, in one place.
Imports nothing: every other module may use it. The tables that give these files their meaning
(artifacts.CERTIFICATES, kubeconfig.KUBECONFIGS, readers.READERS, settings.DEFAULT_IDENTITIES)
name them from here.

pki/ is the initializer's own (no component mounts it); .higress-init/ and backup/ are root's."""

# --- the apiserver (mounted at /etc/api by the apiserver)
APISERVER_CA_CERT = "api/ca.crt"
APISERVER_CA_KEY = "pki/apiserver-ca.key"
APISERVER_CERT = "api/server.crt"
APISERVER_KEY = "api/server.key"
DATA_KEY = "api/nacos.key"                    # encrypts Secrets in Nacos; never replaced
ADMIN_CERT, ADMIN_KEY = "pki/admin.crt", "pki/admin.key"
CONTROLLER_CLIENT_CERT, CONTROLLER_CLIENT_KEY = "controller/kube/client.crt", "controller/kube/client.key"
PILOT_CLIENT_CERT, PILOT_CLIENT_KEY = "pilot/kube/client.crt", "pilot/kube/client.key"
CONSOLE_CLIENT_CERT, CONSOLE_CLIENT_KEY = "pki/console.crt", "pki/console.key"

# --- kubeconfigs: the operator's and one per component calling the apiserver
KUBECONFIG = "kube/config"
HOST_KUBECONFIG = "kube/host.config"          # the operator's, from the host: the apiserver published on loopback
CONTROLLER_KUBECONFIG = "controller/kube/config"
PILOT_KUBECONFIG = "pilot/kube/config"
CONSOLE_KUBECONFIG = "console/kube/config"

# --- the pilot plug-in CA and the gateway
PILOT_ROOT_CERT = "pilot/cacerts/root-cert.pem"
PILOT_ROOT_KEY = "pki/pilot-root-ca.key"
PILOT_CA_CERT = "pilot/cacerts/ca-cert.pem"
PILOT_CA_KEY = "pilot/cacerts/ca-key.pem"
PILOT_CHAIN = "pilot/cacerts/cert-chain.pem"
GATEWAY_CERT_CHAIN = "gateway/certs/cert-chain.pem"
GATEWAY_KEY = "gateway/certs/key.pem"
GATEWAY_ROOT_CERT = "gateway/certs/root-cert.pem"
PREVIOUS_ROOT = "pki/{}.previous.crt"         # during a root rotation: the old root ...
CROSS_ROOT = "pki/{}.cross.crt"               # ... and the new root cross-signed by it

# --- tokens
TOKEN_SIGNING_KEY = "pki/sa.key"
TOKEN_PUBLIC_KEY = "tokens/sa.pub"
TOKEN_RETIRED_KEYS = "pki/sa-retired.json"   # replaced public keys, published until their tokens expire
JWKS = "tokens/jwks.json"
JWKS_WELL_KNOWN = "tokens/.well-known/jwks.json"
OIDC_DISCOVERY = "tokens/.well-known/openid-configuration"
GATEWAY_TOKEN = "gateway/tokens/istio-token"
CONSOLE_TOKEN = "console/token"
CONTROLLER_TOKEN = "controller/token"

# --- pilot's and the gateway's config
MESH = "pilot/config/mesh"
MESH_NETWORKS = "pilot/config/meshNetworks"
POD_LABELS = "gateway/podinfo/labels"
FILE_STORE = "data"                           # the apiserver's file store (FILE_ROOT_DIR's default)

# --- folders components write into, with the mode their image's user needs
CONTROLLER_NACOS_LOGS = ("controller/log/nacos", 0o700)
GATEWAY_ISTIO_DATA = ("gateway/istio/data", 0o755)
GATEWAY_LOGS = ("gateway/log", 0o755)
WRITABLE_DIRS = (CONTROLLER_NACOS_LOGS, GATEWAY_ISTIO_DATA, GATEWAY_LOGS)

# --- the folders each component mounts (readers.READERS)
APISERVER_DIR = "api"
CONTROLLER_KUBE_DIR = "controller/kube"
PILOT_KUBE_DIR, PILOT_CACERTS_DIR, PILOT_CONFIG_DIR = "pilot/kube", "pilot/cacerts", "pilot/config"
GATEWAY_CERTS_DIR, GATEWAY_PODINFO_DIR = "gateway/certs", "gateway/podinfo"
CONSOLE_KUBE_DIR = "console/kube"
PKI_DIR = "pki"                               # the initializer's own secrets: no component mounts it

# --- the initializer's own bookkeeping (root's, never chowned)
STATE_DIR = ".higress-init"
LOCK = f"{STATE_DIR}/lock"
JOURNAL = f"{STATE_DIR}/journal.json"
LAST_RUN = f"{STATE_DIR}/last-run.json"
LAST_RUN_KEY = f"{STATE_DIR}/last-run.key"
SEEDED = f"{STATE_DIR}/seeded.json"           # md5 of what each seeding wrote
MESH_DELIVERED = f"{STATE_DIR}/mesh-delivered.json"  # sha256 of the mesh files as last delivered
SHARED_CA_RECORD = f"{STATE_DIR}/shared-ca.json"    # digests of the pilot CA as last published or adopted here
CA_KEYS_RECORD = f"{STATE_DIR}/ca-keys.json"        # sha256 of each CA certificate whose key was here
DEPLOYMENT_SETTINGS = f"{STATE_DIR}/settings.json"  # the deployment's non-secret settings (settings.SETTINGS, recorded)
BACKUP_DIR = "backup"                          # every replaced file, under backup/<UTC timestamp>/

# Where TOKEN_IDENTITIES may not put a token: folders holding files the initializer manages, a
# component's own mount, or a folder it writes into (a token there would be written over its files).
MANAGED_DIRS = (APISERVER_DIR, PKI_DIR, "tokens", "kube", "pilot", GATEWAY_CERTS_DIR, GATEWAY_PODINFO_DIR, BACKUP_DIR,
                STATE_DIR, FILE_STORE, CONTROLLER_KUBE_DIR, CONSOLE_KUBE_DIR, "controller/log", "gateway/istio",
                "gateway/log")

# --- the file policy, enforced on every run (volume/ownership.py) and checked by `status`
PUBLIC_MODE, PRIVATE_MODE = 0o644, 0o600      # a file's mode: private is its owner's alone
DIR_MODE, PRIVATE_DIR_MODE = 0o755, 0o700
PRIVATE_NAMES = (".key", "key.pem")           # every private key, whatever its folder (kubeconfigs and tokens:
                                              # private too, named by their tables)
# Folders with a policy of their own: (folder, mode, owner). Owner "root": the initializer's whatever
# VOLUMES_UID says (pki/: the CA keys, the token signing key and the admin key, which no component
# mounts); "kept": never chowned (root's bookkeeping); "volumes": VOLUMES_UID/GID, as every other
# folder (the folders components write into, with the mode their image's user needs).
FOLDER_POLICY = (
    (PKI_DIR, PRIVATE_DIR_MODE, "root"),
    (STATE_DIR, PRIVATE_DIR_MODE, "kept"),
    (BACKUP_DIR, PRIVATE_DIR_MODE, "kept"),
    *((rel, mode, "volumes") for rel, mode in WRITABLE_DIRS),
)
# Files root's whatever VOLUMES_UID says: the data key (read by the apiserver, which runs as root);
# a uid-1337 component gets only the keys of the folders it mounts.
ROOT_OWNED_FILES = (DATA_KEY,)

# --- upstream's layout (higress-standalone's compose/scripts), which `migrate` takes over
UPSTREAM_APISERVER_CA_KEY = "api/ca.key"
UPSTREAM_PILOT_ROOT_KEY = "pilot/cacerts/root-key.pem"
# theirs -> ours: the files both layouts have (most at the same place; the CA keys move into pki/)
UPSTREAM_FILES = (
    ("api/ca.crt", APISERVER_CA_CERT), (UPSTREAM_APISERVER_CA_KEY, APISERVER_CA_KEY),
    ("api/server.crt", APISERVER_CERT), ("api/server.key", APISERVER_KEY), ("api/nacos.key", DATA_KEY),
    ("kube/config", KUBECONFIG), ("pilot/cacerts/root-cert.pem", PILOT_ROOT_CERT),
    (UPSTREAM_PILOT_ROOT_KEY, PILOT_ROOT_KEY), ("pilot/cacerts/ca-cert.pem", PILOT_CA_CERT),
    ("pilot/cacerts/ca-key.pem", PILOT_CA_KEY), ("pilot/cacerts/cert-chain.pem", PILOT_CHAIN),
    ("gateway/certs/cert-chain.pem", GATEWAY_CERT_CHAIN), ("gateway/certs/key.pem", GATEWAY_KEY),
    ("gateway/certs/root-cert.pem", GATEWAY_ROOT_CERT), ("gateway/podinfo/labels", POD_LABELS),
)
# what their scripts leave beside the mounted files
UPSTREAM_LEFTOVERS = ("api/client.crt", "api/client.key", "api/server.csr", "api/client.csr",
                      "pilot/cacerts/gateway-cert.pem", "pilot/cacerts/gateway-key.pem", "pilot/cacerts/ca.cfg",
                      "pilot/cacerts/gateway.cfg", "pilot/cacerts/root-cert.srl", "pilot/cacerts/ca-cert.srl")
