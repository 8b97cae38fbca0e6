#!/usr/bin/env bash
# Installs and runs the local stacks from virtual environments inside the repository, bound to
# 127.0.0.1 only: pinned moto server and SeaweedFS (.venv, infra/requirements.txt), and MiniStack
# (.venv-ministack, infra/requirements-ministack.txt; it pins another botocore than moto's boto3).
#   infra/stack.sh venv            create both environments (idempotent)
#   infra/stack.sh up [moto]       start moto (:${MOTO_PORT:-5000}) and SeaweedFS S3 (:${WEED_S3_PORT:-8333}), wait until they answer
#   infra/stack.sh up ministack    start MiniStack (:${MINISTACK_PORT:-4566}: S3, SQS, EventBridge, DynamoDB), wait until it is ready
#   infra/stack.sh down            stop whatever `up` started
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
state="$root/.local/stack"
moto_port=${MOTO_PORT:-5000}
weed_port=${WEED_S3_PORT:-8333}
ministack_port=${MINISTACK_PORT:-4566}

# venv DIR REQUIREMENTS: (re)creates DIR when the requirements file changed since it was built.
venv_from() {
  local dir=$1 reqs=$2
  local stamp="$dir/.requirements.sha"
  local want
  want=$(sha256sum "$reqs" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  python3 -m venv "$dir"
  "$dir/bin/pip" install --quiet --disable-pip-version-check -r "$reqs"
  echo "$want" > "$stamp"
}

venv() {
  venv_from "$root/.venv" "$root/infra/requirements.txt"
  venv_from "$root/.venv-ministack" "$root/infra/requirements-ministack.txt"
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

running() {
  [ -f "$state/$1.pid" ] && kill -0 "$(cat "$state/$1.pid")" 2>/dev/null
}

up_moto() {
  mkdir -p "$state/weed"
  if ! running moto; then
    "$root/.venv/bin/moto_server" -H 127.0.0.1 -p "$moto_port" > "$state/moto.log" 2>&1 &
    echo $! > "$state/moto.pid"
  fi
  if ! running weed; then
    "$root/.venv/bin/weed" mini -dir="$state/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -webdav=false -admin.ui=false -s3.port="$weed_port" -master.volumeSizeLimitMB=64 -volume.max=400 > "$state/weed.log" 2>&1 &
    echo $! > "$state/weed.pid"
  fi
  wait_for "http://127.0.0.1:$moto_port/moto-api/" moto
  wait_for "http://127.0.0.1:$weed_port/" weed
  echo "export AWS_ENDPOINT_URL=http://127.0.0.1:$moto_port   # SeaweedFS S3: http://127.0.0.1:$weed_port"
}

up_ministack() {
  mkdir -p "$state"
  if ! running ministack; then
    # MiniStack listens on 0.0.0.0 unless BIND_HOST says otherwise.
    # Its per-bucket directories and any persisted state stay under .local/stack, not /tmp.
    BIND_HOST=127.0.0.1 GATEWAY_PORT="$ministack_port" SERVICES=sqs,events,s3,dynamodb LOG_LEVEL=WARNING \
      S3_DATA_DIR="$state/ministack/s3" STATE_DIR="$state/ministack/state" \
      "$root/.venv-ministack/bin/ministack" > "$state/ministack.log" 2>&1 &
    echo $! > "$state/ministack.pid"
  fi
  wait_for "http://127.0.0.1:$ministack_port/_ministack/ready" ministack
  echo "export AWS_ENDPOINT_URL=http://127.0.0.1:$ministack_port"
}

up() {
  venv
  case "${1:-moto}" in
    moto) up_moto ;;
    ministack) up_ministack ;;
    *) echo "unknown stack '$1': expected moto or ministack" >&2; exit 2 ;;
  esac
}

down() {
  for name in moto weed ministack; do
    if [ -f "$state/$name.pid" ]; then
      kill "$(cat "$state/$name.pid")" 2>/dev/null || true
      rm -f "$state/$name.pid"
      echo "$name stopped"
    fi
  done
}

case "${1:-}" in
  venv) venv ;;
  up) up "${2:-moto}" ;;
  down) down ;;
  *) echo "usage: $0 venv|up [moto|ministack]|down" >&2; exit 2 ;;
esac
