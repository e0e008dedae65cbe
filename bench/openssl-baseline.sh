#!/usr/bin/env bash
# The baseline: the same keys and certificates as the initializer's PKI and token phases, made
# the way a shell initializer does it, one openssl call per step.
# Usage: openssl-baseline.sh OUT_DIR   (RSA-4096 CAs, RSA-2048 leaves and token key; SHA-256)
set -euo pipefail
out="$1"
mkdir -p "$out"/{api,pki,pilot/cacerts,gateway/certs,tokens}
cd "$out"
ext="$(mktemp)"
trap 'rm -f "$ext" ./*.csr pki/*.csr' EXIT

# apiserver CA
openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:4096 -out pki/apiserver-ca.key
openssl req -x509 -new -key pki/apiserver-ca.key -sha256 -days 3650 -subj "/CN=higress-apiserver-ca" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,digitalSignature,keyCertSign,cRLSign" \
  -addext "subjectKeyIdentifier=hash" -out api/ca.crt

# apiserver serving certificate
openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out api/server.key
openssl req -new -key api/server.key -subj "/CN=apiserver" -out api/server.csr
cat > "$ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
subjectAltName=DNS:apiserver,DNS:apiserver.svc,DNS:apiserver.higress-system,DNS:apiserver.higress-system.svc,DNS:localhost,IP:127.0.0.1
EXT
openssl x509 -req -in api/server.csr -CA api/ca.crt -CAkey pki/apiserver-ca.key -CAcreateserial -sha256 -days 365 \
  -extfile "$ext" -out api/server.crt

# admin client certificate
openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out pki/admin.key
openssl req -new -key pki/admin.key -subj "/O=system:masters/CN=higress-admin" -out pki/admin.csr
cat > "$ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EXT
openssl x509 -req -in pki/admin.csr -CA api/ca.crt -CAkey pki/apiserver-ca.key -CAcreateserial -sha256 -days 365 \
  -extfile "$ext" -out pki/admin.crt

# pilot root CA
openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:4096 -out pki/pilot-root-ca.key
openssl req -x509 -new -key pki/pilot-root-ca.key -sha256 -days 3650 -subj "/O=Higress/CN=Higress Root CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,digitalSignature,keyCertSign,cRLSign" \
  -addext "subjectKeyIdentifier=hash" -out pilot/cacerts/root-cert.pem

# pilot intermediate CA
openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:4096 -out pilot/cacerts/ca-key.pem
openssl req -new -key pilot/cacerts/ca-key.pem -subj "/O=Higress/CN=Higress Intermediate CA" -out pilot/ca.csr
cat > "$ext" <<EXT
basicConstraints=critical,CA:TRUE,pathlen:0
keyUsage=critical,digitalSignature,keyCertSign,cRLSign
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EXT
openssl x509 -req -in pilot/ca.csr -CA pilot/cacerts/root-cert.pem -CAkey pki/pilot-root-ca.key -CAcreateserial \
  -sha256 -days 730 -extfile "$ext" -out pilot/cacerts/ca-cert.pem
cat pilot/cacerts/ca-cert.pem pilot/cacerts/root-cert.pem > pilot/cacerts/cert-chain.pem

# gateway workload certificate
openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out gateway/certs/key.pem
openssl req -new -key gateway/certs/key.pem -subj "/" -out gateway/gateway.csr
cat > "$ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
subjectAltName=critical,URI:spiffe://cluster.local/ns/higress-system/sa/higress-gateway
EXT
openssl x509 -req -in gateway/gateway.csr -CA pilot/cacerts/ca-cert.pem -CAkey pilot/cacerts/ca-key.pem \
  -CAcreateserial -sha256 -days 365 -extfile "$ext" -out gateway/leaf.pem
cat gateway/leaf.pem pilot/cacerts/ca-cert.pem > gateway/certs/cert-chain.pem
cp pilot/cacerts/root-cert.pem gateway/certs/root-cert.pem

# token signing key
openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out pki/sa.key
openssl pkey -in pki/sa.key -pubout -out tokens/sa.pub

rm -f gateway/leaf.pem gateway/*.csr pilot/*.csr api/*.csr api/*.srl pilot/cacerts/*.srl pki/*.srl ./*.srl
chmod 600 pki/*.key api/server.key pilot/cacerts/ca-key.pem gateway/certs/key.pem
