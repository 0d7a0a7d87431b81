# Sourced by scripts/run and scripts/test: installs what is missing, idempotently.
# Debian (12 or newer) as root: apt packages, a virtualenv with shoal, dockerd, the test image.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SHOAL_VENV:-$ROOT/.venv}"
TEST_IMAGE="shoal/busybox:latest"

log() { printf '==> %s\n' "$*" >&2; }

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "shoal's setup installs Debian packages and starts dockerd: run it as root (sudo $0)" >&2
    exit 1
  fi
}

ensure_apt() {
  local missing=()
  command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
  command -v mosquitto_sub >/dev/null 2>&1 || missing+=(mosquitto-clients)
  command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || missing+=(nats-server)
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  [ -x /bin/busybox ] || missing+=(busybox-static)
  command -v ip >/dev/null 2>&1 || missing+=(iproute2)
  command -v iptables >/dev/null 2>&1 || missing+=(iptables)
  command -v nsenter >/dev/null 2>&1 || missing+=(util-linux)
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
  command -v dig >/dev/null 2>&1 || missing+=(bind9-dnsutils)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
  if [ "${#missing[@]}" -gt 0 ]; then
    need_root
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  # Debian starts a system-wide mosquitto on 1883; shoal runs its own and needs no other.
}

# Test-only: Debian's headless Chromium for the dashboard's browser test (scripts/test).
ensure_test_browser() {
  if ! command -v chromium >/dev/null 2>&1; then
    need_root
    log "installing chromium (for the dashboard's browser test)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium >/dev/null
  fi
}

ensure_venv() {
  local extra="${1:-}"
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    python3 -m venv "$VENV"
  fi
  local stamp="$VENV/.installed$extra"
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    log "installing shoal$extra into $VENV"
    "$VENV/bin/pip" install -q --upgrade pip >/dev/null
    # compat: the checkout goes on sys.path as a plain .pth entry; the default editable mode
    # imports a finder (pathlib, importlib.util, ...) in every interpreter, 20 ms a command
    "$VENV/bin/pip" install -q -e "$ROOT$extra" --config-settings editable_mode=compat
    touch "$stamp"
  fi
}

ensure_docker() {
  if docker info >/dev/null 2>&1; then
    return
  fi
  need_root
  log "starting dockerd"
  mkdir -p /var/log
  nohup dockerd >/var/log/shoal-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && return
    sleep 0.5
  done
  echo "dockerd did not start; see /var/log/shoal-dockerd.log" >&2
  tail -n 20 /var/log/shoal-dockerd.log >&2 || true
  exit 1
}

ensure_test_image() {
  if docker image inspect "$TEST_IMAGE" >/dev/null 2>&1; then
    return
  fi
  log "building $TEST_IMAGE from Debian's busybox-static (no registry needed)"
  local tmp
  tmp="$(mktemp -d)"
  mkdir -p "$tmp/bin" "$tmp/etc" "$tmp/tmp" "$tmp/proc" "$tmp/sys" "$tmp/dev" "$tmp/var/www" "$tmp/root"
  cp /bin/busybox "$tmp/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$tmp/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$tmp/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$tmp/etc/group"
  echo '<h1>shoal</h1>' >"$tmp/var/www/index.html"
  chmod 1777 "$tmp/tmp"
  tar -C "$tmp" -c . | docker import -c 'CMD ["/bin/sh"]' -c 'ENV PATH=/bin' - "$TEST_IMAGE" >/dev/null
  rm -rf "$tmp"
}
