#!/bin/sh
# Smoke test of one sentinel-tunnel executable, for the release targets whose runner cannot run the
# whole suite (Linux arm64, macOS): a Redis master and one Sentinel on loopback, then the binary
# checks the config online, tunnels a write to the master, answers /readyz, and exits 0 on SIGTERM.
# Needs redis-server, redis-cli and curl. Usage: .ci/smoke_binary.sh BINARY
set -eu
binary=${1:?usage: .ci/smoke_binary.sh BINARY (the sentinel-tunnel executable to smoke-test)}
base=${SMOKE_BASE_PORT:-17300}
master_port=$base
sentinel_port=$((base + 1))
tunnel_port=$((base + 2))
admin_port=$((base + 3))
dir=$(mktemp -d "${TMPDIR:-/tmp}/st-smoke.XXXXXX")
pids=""

fail() {
  echo "smoke: $binary: $*" >&2
  for log in "$dir"/*.log; do [ -f "$log" ] && { echo "--- $log" >&2; tail -n 20 "$log" >&2; }; done
  exit 1
}
cleanup() {
  for pid in $pids; do kill -9 "$pid" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT

# Waits up to 30 s for command "$@" to succeed, or fails at once if process $watch (if set) exits.
watch=""
await() {
  tries=0
  until "$@" >/dev/null 2>&1; do
    tries=$((tries + 1))
    [ "$tries" -lt 300 ] || return 1
    if [ -n "$watch" ] && ! kill -0 "$watch" 2>/dev/null; then
      status=0
      wait "$watch" || status=$?
      fail "exited $status while waiting for: $*"
    fi
    sleep 0.1
  done
}

version=$("$binary" --version) || fail "--version failed"
echo "smoke: $version"

redis-server --port "$master_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
  >"$dir/master.log" 2>&1 &
pids="$pids $!"
await redis-cli -p "$master_port" PING || fail "the master on port $master_port did not start"

printf 'port %s\nbind 127.0.0.1\ndir %s\nsentinel monitor smoke 127.0.0.1 %s 1\n' \
  "$sentinel_port" "$dir" "$master_port" >"$dir/sentinel.conf"
redis-server "$dir/sentinel.conf" --sentinel >"$dir/sentinel.log" 2>&1 &
pids="$pids $!"
await redis-cli -p "$sentinel_port" SENTINEL GET-MASTER-ADDR-BY-NAME smoke ||
  fail "the Sentinel on port $sentinel_port did not start"

cat >"$dir/config.jsonc" <<EOF
// The smoke test's deployment: one master, one Sentinel.
{
  "sentinels": ["127.0.0.1:$sentinel_port"],
  "databases": [{ "name": "smoke", "port": $tunnel_port }]
}
EOF
"$binary" --check --online "$dir/config.jsonc" >"$dir/check.log" 2>&1 ||
  fail "--check --online failed (exit $?)"

"$binary" --log-format json --admin "127.0.0.1:$admin_port" "$dir/config.jsonc" \
  >"$dir/tunnel.log" 2>&1 &
tunnel_pid=$!
pids="$pids $tunnel_pid"
watch=$tunnel_pid
await curl -fsS "http://127.0.0.1:$admin_port/readyz" || fail "/readyz never answered 200"

value="smoke-$$"
reply=$(redis-cli -p "$tunnel_port" SET smoke-key "$value") || fail "SET through the tunnel failed"
[ "$reply" = OK ] || fail "SET through the tunnel answered \"$reply\""
stored=$(redis-cli -p "$master_port" GET smoke-key)
[ "$stored" = "$value" ] || fail "the master holds \"$stored\", not the value written through the tunnel"

kill -TERM "$tunnel_pid"
status=0
wait "$tunnel_pid" || status=$?
[ "$status" = 0 ] || fail "exited $status on SIGTERM, not 0"
echo "smoke: ok: --check --online, /readyz, a write through port $tunnel_port, exit 0 on SIGTERM"
