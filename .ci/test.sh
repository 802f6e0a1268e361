#!/usr/bin/env bash
# Runs every test and ends with one line: "N passed, N failed".
set -uo pipefail
export RUST_BACKTRACE=0 NO_COLOR=1
cd "$(dirname "$0")/.." || exit 1
deno=.tools/bin/deno
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# Narrow permissions: loopback only, and as subprocesses only redis-server, redis-cli, openssl
# (certificates for the TLS tests), this Deno, the tunnel's executable (SENTINEL_TUNNEL_BINARY, when
# set: see tests/_tunnel.ts), sh (for install.sh; what it runs in turn is its own business),
# the shellcheck linter, promtool (the alert rules and /metrics, in metrics_test.ts), Debian's Chromium
# (the status page's browser tests), and podman with bash (make image's build script) for the
# container image's tests.
tunnel_binary=${SENTINEL_TUNNEL_BINARY:+,$(readlink -f "$SENTINEL_TUNNEL_BINARY")}
"$deno" test --sanitize-ops --sanitize-resources \
  "--allow-net=127.0.0.1,localhost,[::1]" \
  --allow-run=redis-server,redis-cli,openssl,ip,"$(readlink -f "$deno")",sh,shellcheck,promtool,setpriv,/usr/bin/chromium,podman,bash"$tunnel_binary" \
  --allow-read --allow-write --allow-env \
  "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

# Count test cases (steps included) from Deno's per-test lines.
passed=$(grep -cE ' \.\.\. ok( |$)' "$log" || true)
failed=$(grep -cE ' \.\.\. FAILED( |$)' "$log" || true)
# REQUIRE_EVERY_TEST=1 (the release workflow): a test ignored for want of root, podman, Chromium or
# the like counts as failed, so "the whole suite" means every test.
ignored=$(grep -E ' \.\.\. ignored( |$)' "$log" || true)
if [ -n "$ignored" ] && [ "${REQUIRE_EVERY_TEST:-}" = 1 ]; then
  echo "REQUIRE_EVERY_TEST=1, but these tests were ignored:"
  echo "$ignored"
  failed=$((failed + $(echo "$ignored" | wc -l)))
  status=1
fi
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "$passed passed, $failed failed"
exit "$status"
