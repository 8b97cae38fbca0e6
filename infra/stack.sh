#!/usr/bin/env bash
# Installs and runs the local stack: pinned moto server and SeaweedFS from a virtual environment
# inside the repository, bound to 127.0.0.1 only.
#   infra/stack.sh venv    create .venv from infra/requirements.txt (idempotent)
#   infra/stack.sh up      start moto (:${MOTO_PORT:-5000}) and SeaweedFS S3 (:${WEED_S3_PORT:-8333}), wait until they answer
#   infra/stack.sh down    stop what `up` started
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
state="$root/.local/stack"
moto_port=${MOTO_PORT:-5000}
weed_port=${WEED_S3_PORT:-8333}

venv() {
  local stamp="$venv/.requirements.sha"
  local want
  want=$(sha256sum "$root/infra/requirements.txt" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/infra/requirements.txt"
  echo "$want" > "$stamp"
}

wait_for() {
  local url=$1 name=$2
  for _ in $(seq 1 120); do
    if curl -s -o /dev/null "$url"; then echo "$name is up at $url"; return 0; fi
    sleep 0.5
  done
  echo "$name did not answer at $url; see $state/$name.log" >&2
  return 1
}

up() {
  venv
  mkdir -p "$state/weed"
  if [ ! -f "$state/moto.pid" ] || ! kill -0 "$(cat "$state/moto.pid")" 2>/dev/null; then
    "$venv/bin/moto_server" -H 127.0.0.1 -p "$moto_port" > "$state/moto.log" 2>&1 &
    echo $! > "$state/moto.pid"
  fi
  if [ ! -f "$state/weed.pid" ] || ! kill -0 "$(cat "$state/weed.pid")" 2>/dev/null; then
    "$venv/bin/weed" mini -dir="$state/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -webdav=false -admin.ui=false -s3.port="$weed_port" -master.volumeSizeLimitMB=64 -volume.max=400 > "$state/weed.log" 2>&1 &
    echo $! > "$state/weed.pid"
  fi
  wait_for "http://127.0.0.1:$moto_port/moto-api/" moto
  wait_for "http://127.0.0.1:$weed_port/" weed
  echo "export AWS_ENDPOINT_URL=http://127.0.0.1:$moto_port   # SeaweedFS S3: http://127.0.0.1:$weed_port"
}

down() {
  for name in moto weed; do
    if [ -f "$state/$name.pid" ]; then
      kill "$(cat "$state/$name.pid")" 2>/dev/null || true
      rm -f "$state/$name.pid"
      echo "$name stopped"
    fi
  done
}

case "${1:-}" in
  venv) venv ;;
  up) up ;;
  down) down ;;
  *) echo "usage: $0 venv|up|down" >&2; exit 2 ;;
esac
