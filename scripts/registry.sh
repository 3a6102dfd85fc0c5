#!/usr/bin/env bash
# scripts/registry.sh — a real OCI registry (Debian's docker-registry, distribution 2.8) on
# 127.0.0.1 for rl's tests, and the images of scripts/make-images.py pushed into it.
# tests/fixtures/README.md documents the images, the auth modes and the token contract.
#
#   registry.sh start DIR PORT [--auth none|basic|token] [--htpasswd FILE] [--creds USER:PASS]
#                   [--token-realm URL --token-issuer NAME --token-cert CERT
#                    [--token-service NAME]]
#       Write DIR/config.yml (storage in DIR/storage, http on 127.0.0.1:PORT, deletes on, no
#       TLS), start `docker-registry serve` in the background (log DIR/registry.log, pid
#       DIR/registry.pid) and return once /v2/ answers (200, or 401 with auth). Storage
#       survives stop/start, so seed without auth and restart with auth to test pulls.
#       basic: --htpasswd FILE, or DIR/htpasswd made with `htpasswd -B` from --creds
#              (default rltest:rltest-password).
#       token: clients must bring a JWT from --token-realm; see the README for its contract.
#   registry.sh stop DIR
#   registry.sh seed DIR PORT OUT [--creds USER:PASS]
#       Push every OCI layout OUT/<name> to 127.0.0.1:PORT/test/<name>:latest (an image index
#       with all its manifests) and test/busybox also as :v1, byte for byte.
#   registry.sh gen-token-key DIR [--ec]
#       DIR/token.key and self-signed DIR/token.crt (RSA 2048 for RS256, or P-256 for ES256
#       with --ec) and DIR/token.kid, the key id the registry expects in a token's `kid`.
#   registry.sh kid CERT
#       Print the libtrust key id of the public key in CERT.
#   registry.sh token KEYDIR ISSUER SERVICE SUBJECT [SCOPE...]
#       Print a JWT signed with KEYDIR/token.key the way the token server must make them
#       (SCOPE as in the challenge: repository:test/busybox:pull,push or registry:catalog:*);
#       a reference for the test harness's token server and a way to check a registry by hand.
set -euo pipefail

die() { printf 'error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2; exit 2; }

need() {
  command -v "$1" >/dev/null || die "\`$1\` missing: apt-get install $2"
}

# http_code URL [CURL ARGS...]: the status of a GET, or 000 when nothing answers.
http_code() {
  local url=$1; shift
  curl -s -o /dev/null --max-time 2 -w '%{http_code}' "$@" "$url" || true
}

# registry_pid DIR: print the pid in DIR/registry.pid when that process is still our registry.
registry_pid() {
  local dir=$1 pid
  [ -f "$dir/registry.pid" ] || return 1
  pid=$(cat "$dir/registry.pid")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  # A recycled pid would be some other program: only a docker-registry serving our config.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "serve $dir/config.yml" || return 1
  echo "$pid"
}

cmd_start() {
  [ $# -ge 2 ] || usage
  local dir=$1 port=$2 auth=none htpasswd_file='' creds=rltest:rltest-password
  local realm='' issuer='' cert='' service=rl-test-registry
  shift 2
  while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || die "$1 needs a value"
    case $1 in
      --auth) auth=$2 ;;
      --htpasswd) htpasswd_file=$2 ;;
      --creds) creds=$2 ;;
      --token-realm) realm=$2 ;;
      --token-issuer) issuer=$2 ;;
      --token-cert) cert=$2 ;;
      --token-service) service=$2 ;;
      *) die "unknown option $1" ;;
    esac
    shift 2
  done
  [[ $port =~ ^[0-9]+$ ]] || die "PORT must be a number, not \`$port\`"
  need docker-registry docker-registry
  need curl curl
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd -P)

  if registry_pid "$dir" >/dev/null; then
    die "a registry from $dir is already running; \`$0 stop $dir\` first"
  fi
  rm -f "$dir/registry.pid"
  # Never mistake someone else's server for ours.
  [ "$(http_code "http://127.0.0.1:$port/")" = 000 ] || die "something already listens on 127.0.0.1:$port"

  local auth_yaml
  case $auth in
    none) auth_yaml='' ;;
    basic)
      if [ -n "$htpasswd_file" ]; then
        [ -f "$htpasswd_file" ] || die "no htpasswd file $htpasswd_file"
        htpasswd_file=$(cd "$(dirname "$htpasswd_file")" && pwd -P)/$(basename "$htpasswd_file")
      else
        # docker-registry reads only bcrypt entries; apache2-utils' htpasswd -B writes them.
        need htpasswd apache2-utils
        [[ $creds == *:* ]] || die "--creds must be USER:PASSWORD"
        htpasswd_file=$dir/htpasswd
        htpasswd -Bbn "${creds%%:*}" "${creds#*:}" 2>/dev/null | sed "/^$/d" >"$htpasswd_file"
      fi
      auth_yaml="auth:
  htpasswd:
    realm: rl-test-registry
    path: \"$htpasswd_file\""
      ;;
    token)
      if [ -z "$realm" ] || [ -z "$issuer" ] || [ -z "$cert" ]; then
        die "--auth token needs --token-realm, --token-issuer and --token-cert"
      fi
      [ -f "$cert" ] || die "no certificate $cert (make one with \`$0 gen-token-key DIR\`)"
      cert=$(cd "$(dirname "$cert")" && pwd -P)/$(basename "$cert")
      auth_yaml="auth:
  token:
    realm: \"$realm\"
    service: \"$service\"
    issuer: \"$issuer\"
    rootcertbundle: \"$cert\""
      ;;
    *) die "--auth must be none, basic or token" ;;
  esac

  mkdir -p "$dir/storage"
  cat >"$dir/config.yml" <<EOF
# Written by scripts/registry.sh for rl's tests; docker-registry (distribution 2.8).
version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: "$dir/storage"
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
  secret: rl-test-registry-secret
  headers:
    X-Content-Type-Options: [nosniff]
$auth_yaml
EOF

  # Its own session and no inherited descriptors: a caller reading our output (a test
  # harness's pipe) sees EOF when this script ends, not when the registry does.
  setsid docker-registry serve "$dir/config.yml" </dev/null >>"$dir/registry.log" 2>&1 &
  local pid=$! code i
  echo "$pid" >"$dir/registry.pid"
  for ((i = 0; i < 100; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$dir/registry.pid"
      tail -n 20 "$dir/registry.log" >&2
      die "docker-registry exited; log above ($dir/registry.log)"
    fi
    code=$(http_code "http://127.0.0.1:$port/v2/")
    if [ "$code" = 200 ] || [ "$code" = 401 ]; then
      echo "registry: http://127.0.0.1:$port (auth $auth, pid $pid, log $dir/registry.log)"
      return 0
    fi
    sleep 0.1
  done
  kill "$pid" 2>/dev/null || true
  rm -f "$dir/registry.pid"
  tail -n 20 "$dir/registry.log" >&2
  die "docker-registry did not answer on 127.0.0.1:$port within 10 s"
}

cmd_stop() {
  [ $# -eq 1 ] || usage
  local dir pid i
  dir=$(cd "$1" 2>/dev/null && pwd -P) || die "no directory $1"
  if ! pid=$(registry_pid "$dir"); then
    rm -f "$dir/registry.pid"
    echo "registry: none running from $dir"
    return 0
  fi
  kill "$pid"
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/registry.pid"
  echo "registry: stopped pid $pid"
}

cmd_seed() {
  [ $# -ge 3 ] || usage
  local dir=$1 port=$2 out=$3 creds='' layout name top
  shift 3
  while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || die "$1 needs a value"
    case $1 in
      --creds) creds=$2 ;;
      *) die "unknown option $1" ;;
    esac
    shift 2
  done
  need skopeo skopeo
  need jq jq
  [ -d "$out" ] || die "no directory $out (make it with scripts/make-images.py)"
  registry_pid "$(cd "$dir" && pwd -P)" >/dev/null || die "no registry running from $dir"
  # --preserve-digests: push the layouts byte for byte (skopeo would otherwise gzip the
  # uncompressed layer of `zstd`); --insecure-policy: these are our own images.
  local -a copy=(skopeo --insecure-policy copy -q --preserve-digests --dest-tls-verify=false)
  [ -z "$creds" ] || copy+=(--dest-creds "$creds")
  local n=0
  for layout in "$out"/*/; do
    layout=${layout%/}
    [ -f "$layout/oci-layout" ] || continue
    name=$(basename "$layout")
    top=$(jq -r '.manifests[0].mediaType' "$layout/index.json")
    local -a all=()
    [ "$top" != application/vnd.oci.image.index.v1+json ] || all=(--all)
    "${copy[@]}" "${all[@]}" "oci:$layout" "docker://127.0.0.1:$port/test/$name:latest"
    if [ "$name" = busybox ]; then
      "${copy[@]}" "oci:$layout" "docker://127.0.0.1:$port/test/$name:v1"
    fi
    echo "seeded 127.0.0.1:$port/test/$name:latest$([ "$name" != busybox ] || echo ' :v1')"
    n=$((n + 1))
  done
  [ "$n" -gt 0 ] || die "no OCI layouts in $out"
}

# kid CERT: libtrust's key id — SHA-256 of the DER SubjectPublicKeyInfo, first 240 bits,
# base32 without padding, in 12 groups of 4 joined by ':'.
cmd_kid() {
  [ $# -eq 1 ] || usage
  need openssl openssl
  openssl x509 -in "$1" -noout -pubkey | openssl pkey -pubin -outform DER |
    python3 -c '
import base64, hashlib, sys
s = base64.b32encode(hashlib.sha256(sys.stdin.buffer.read()).digest()[:30]).decode()
print(":".join(s[i:i + 4] for i in range(0, len(s), 4)))'
}

cmd_gen_token_key() {
  [ $# -ge 1 ] || usage
  local dir=$1 kind=${2:-}
  need openssl openssl
  mkdir -p "$dir"
  case $kind in
    '') openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/token.key" 2>/dev/null ;;
    --ec) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/token.key" 2>/dev/null ;;
    *) die "unknown option $kind" ;;
  esac
  chmod 0600 "$dir/token.key"
  # Self-signed: it is both the registry's rootcertbundle and the leaf of an `x5c` chain.
  openssl req -new -x509 -key "$dir/token.key" -out "$dir/token.crt" -days 3650 \
    -subj /CN=rl-test-token-issuer -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,digitalSignature,keyCertSign 2>/dev/null
  cmd_kid "$dir/token.crt" >"$dir/token.kid"
  echo "token key: $dir/token.key ($([ -z "$kind" ] && echo RS256 || echo ES256)), cert: $dir/token.crt, kid: $(cat "$dir/token.kid")"
}

cmd_token() {
  [ $# -ge 4 ] || usage
  local keydir=$1
  shift
  need openssl openssl
  if ! [ -f "$keydir/token.key" ] || ! [ -f "$keydir/token.crt" ]; then
    die "no $keydir/token.key and token.crt (make them with \`$0 gen-token-key $keydir\`)"
  fi
  python3 - "$keydir" "$(cmd_kid "$keydir/token.crt")" "$@" <<'EOF'
import base64, json, os, subprocess, sys, time

keydir, kid, issuer, service, subject, scopes = sys.argv[1], sys.argv[2], sys.argv[3], \
    sys.argv[4], sys.argv[5], sys.argv[6:]
key = os.path.join(keydir, "token.key")
ec = b"ASN1 OID:" in subprocess.run(["openssl", "pkey", "-in", key, "-noout", "-text"],
                                   stdout=subprocess.PIPE, check=True).stdout

def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

access = []
for scope in scopes:  # type:name:actions, and the name may hold a port's colon
    typ, rest = scope.split(":", 1)
    name, actions = rest.rsplit(":", 1)
    access.append({"type": typ, "name": name, "actions": actions.split(",")})
now = int(time.time())
header = {"typ": "JWT", "alg": "ES256" if ec else "RS256", "kid": kid}
claims = {"iss": issuer, "sub": subject, "aud": service, "exp": now + 300, "nbf": now - 10,
          "iat": now, "jti": b64(os.urandom(16)), "access": access}
signing_input = (b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode()))
sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=signing_input.encode(),
                     stdout=subprocess.PIPE, check=True).stdout
if ec:  # DER SEQUENCE { INTEGER r, INTEGER s } -> r || s, 32 bytes each
    def integer(b, i):
        assert b[i] == 2
        n = b[i + 1]
        return int.from_bytes(b[i + 2:i + 2 + n], "big"), i + 2 + n
    i = 3 if sig[1] & 0x80 else 2
    r, i = integer(sig, i)
    s, _ = integer(sig, i)
    sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
print(signing_input + "." + b64(sig))
EOF
}

[ $# -ge 1 ] || usage
sub=$1
shift
case $sub in
  start) cmd_start "$@" ;;
  stop) cmd_stop "$@" ;;
  seed) cmd_seed "$@" ;;
  gen-token-key) cmd_gen_token_key "$@" ;;
  kid) cmd_kid "$@" ;;
  token) cmd_token "$@" ;;
  -h | --help | help) usage ;;
  *) die "unknown command \`$sub\`" ;;
esac
