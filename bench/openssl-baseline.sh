#!/usr/bin/env bash
# The baseline: the same keys and certificates as the initializer's PKI and token phases, made
# the way a shell initializer does it, one openssl call per step.
# Usage: openssl-baseline.sh OUT_DIR   (RSA-4096 CAs, RSA-2048 leaves and token key; SHA-256)
# CA_BITS=2048 makes the CAs smaller (the tests check the shape, not the timing).
set -euo pipefail
ca_bits="${CA_BITS:-4096}"
out="$1"
mkdir -p "$out"/{api,pki,pilot/cacerts,pilot/kube,controller/kube,gateway/certs,tokens}
cd "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

key() {  # key FILE BITS
  openssl genpkey -quiet -algorithm RSA -pkeyopt "rsa_keygen_bits:$2" -out "$1"
}

root() {  # root KEY CERT SUBJECT
  openssl req -x509 -new -key "$1" -sha256 -days 3650 -subj "$3" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,digitalSignature,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" -out "$2"
}

issue() {  # issue KEY SUBJECT CA_CERT CA_KEY DAYS OUT EXTENSION...
  local key="$1" subject="$2" ca="$3" ca_key="$4" days="$5" cert="$6"
  shift 6
  printf '%s\n' "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid" "$@" > "$work/ext"
  openssl req -new -key "$key" -subj "$subject" -out "$work/req.csr"
  openssl x509 -req -in "$work/req.csr" -CA "$ca" -CAkey "$ca_key" -CAserial "$work/serial" -CAcreateserial \
    -sha256 -days "$days" -extfile "$work/ext" -out "$cert"
}

leaf_usage="keyUsage=critical,digitalSignature,keyEncipherment"

# apiserver CA, serving certificate, admin client certificate
key pki/apiserver-ca.key "$ca_bits"
root pki/apiserver-ca.key api/ca.crt "/CN=higress-apiserver-ca"
key api/server.key 2048
issue api/server.key "/CN=apiserver" api/ca.crt pki/apiserver-ca.key 365 api/server.crt \
  "basicConstraints=critical,CA:FALSE" "$leaf_usage" "extendedKeyUsage=serverAuth" \
  "subjectAltName=DNS:apiserver,DNS:apiserver.svc,DNS:apiserver.higress-system,DNS:apiserver.higress-system.svc,DNS:localhost,IP:127.0.0.1"
key pki/admin.key 2048
issue pki/admin.key "/O=system:masters/CN=higress-admin" api/ca.crt pki/apiserver-ca.key 365 pki/admin.crt \
  "basicConstraints=critical,CA:FALSE" "$leaf_usage" "extendedKeyUsage=clientAuth"
# one client certificate per component that calls the apiserver
for component in controller:controller/kube/client pilot:pilot/kube/client console:pki/console; do
  name=${component%%:*} file=${component#*:}
  key "$file.key" 2048
  issue "$file.key" "/O=system:masters/CN=$name" api/ca.crt pki/apiserver-ca.key 365 "$file.crt" \
    "basicConstraints=critical,CA:FALSE" "$leaf_usage" "extendedKeyUsage=clientAuth"
done

# pilot plug-in CA: root, intermediate, chain
key pki/pilot-root-ca.key "$ca_bits"
root pki/pilot-root-ca.key pilot/cacerts/root-cert.pem "/O=Higress/CN=Higress Root CA"
key pilot/cacerts/ca-key.pem "$ca_bits"
issue pilot/cacerts/ca-key.pem "/O=Higress/CN=Higress Intermediate CA" pilot/cacerts/root-cert.pem \
  pki/pilot-root-ca.key 730 pilot/cacerts/ca-cert.pem \
  "basicConstraints=critical,CA:TRUE,pathlen:0" "keyUsage=critical,digitalSignature,keyCertSign,cRLSign"
cat pilot/cacerts/ca-cert.pem pilot/cacerts/root-cert.pem > pilot/cacerts/cert-chain.pem

# gateway workload certificate
key gateway/certs/key.pem 2048
issue gateway/certs/key.pem "/" pilot/cacerts/ca-cert.pem pilot/cacerts/ca-key.pem 365 "$work/leaf.pem" \
  "basicConstraints=critical,CA:FALSE" "$leaf_usage" "extendedKeyUsage=serverAuth,clientAuth" \
  "subjectAltName=critical,URI:spiffe://cluster.local/ns/higress-system/sa/higress-gateway"
cat "$work/leaf.pem" pilot/cacerts/ca-cert.pem > gateway/certs/cert-chain.pem
cp pilot/cacerts/root-cert.pem gateway/certs/root-cert.pem

# token signing key
key pki/sa.key 2048
openssl pkey -in pki/sa.key -pubout -out tokens/sa.pub

chmod 600 pki/*.key api/server.key pilot/cacerts/ca-key.pem gateway/certs/key.pem
