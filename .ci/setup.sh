#!/usr/bin/env bash
# Installs what the project needs: a pinned Deno in .tools/ (from the npm registry),
# redis-server, redis-tools, shellcheck, chromium, podman and runc (apt-get, as root), and the
# locked npm dependencies.
set -euo pipefail
export RUST_BACKTRACE=0
cd "$(dirname "$0")/.."

DENO_VERSION=$(cat .deno-version)
tools=.tools
mkdir -p "$tools/bin"

installed_version() { "$1" --version 2>/dev/null | awk 'NR==1 {print $2}'; }

if [ -x "$tools/bin/deno" ] && [ "$(installed_version "$tools/bin/deno")" = "$DENO_VERSION" ]; then
  :
elif command -v deno >/dev/null 2>&1 && [ "$(installed_version deno)" = "$DENO_VERSION" ]; then
  ln -sf "$(command -v deno)" "$tools/bin/deno"
else
  case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) platform=linux-x64-glibc ;;
    Linux-aarch64 | Linux-arm64) platform=linux-arm64-glibc ;;
    Darwin-x86_64) platform=darwin-x64 ;;
    Darwin-arm64) platform=darwin-arm64 ;;
    *) echo "setup: no Deno package for $(uname -s) $(uname -m); install Deno $DENO_VERSION and put it on PATH" >&2; exit 1 ;;
  esac
  if ! command -v npm >/dev/null 2>&1; then
    echo "setup: npm is needed to fetch Deno $DENO_VERSION from the npm registry; install Node.js and npm, or put Deno $DENO_VERSION on PATH" >&2
    exit 1
  fi
  echo "setup: installing Deno $DENO_VERSION (@deno/$platform) into $tools/"
  # The platform package carries the binary; the wrapper's postinstall is not needed.
  npm install --prefix "$tools" --no-save --no-audit --no-fund --ignore-scripts \
    "@deno/$platform@$DENO_VERSION" >/dev/null
  ln -sf "../node_modules/@deno/$platform/deno" "$tools/bin/deno"
fi
echo "setup: $("$tools/bin/deno" --version | head -n 1)"

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing redis-server and redis-tools with apt-get"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
    # The package starts a system Redis on 6379; the project never uses it.
    (service redis-server stop || true) >/dev/null 2>&1
  else
    echo "setup: redis-server and redis-cli are missing; install them (Debian/Ubuntu: sudo apt-get install redis-server redis-tools; macOS: brew install redis) and run make setup again" >&2
    exit 1
  fi
fi
echo "setup: $(redis-server --version | cut -d' ' -f1-3)"

# tests/install_test.ts runs shellcheck on install.sh, and fails, saying why, where it is missing.
if ! command -v shellcheck >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing shellcheck with apt-get"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null
  else
    echo "setup: shellcheck is missing, so the install.sh lint test will fail; install it (Debian/Ubuntu: sudo apt-get install shellcheck; macOS: brew install shellcheck)" >&2
  fi
fi

# tests/metrics_test.ts checks the alert rules in deploy/prometheus/ and the tunnel's /metrics with
# promtool, from Debian's prometheus package; it ignores those checks, saying why, where it is missing.
if ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing promtool (prometheus) with apt-get"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    # The package may start a Prometheus server on 9090; the project never uses it.
    (service prometheus stop || true) >/dev/null 2>&1
  else
    echo "setup: promtool is missing, so tests/metrics_test.ts ignores its promtool checks; install it (Debian/Ubuntu: sudo apt-get install prometheus; macOS: brew install prometheus)" >&2
  fi
fi

# The TLS tests make their certificates with openssl; the dual-stack test needs ip (iproute2), as
# root; the release smoke test (tests/smoke_binary_test.ts) asks /readyz with curl.
for need in openssl:openssl ip:iproute2 curl:curl; do
  command=${need%%:*} package=${need#*:}
  command -v "$command" >/dev/null 2>&1 && continue
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing $package with apt-get"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null
  else
    echo "setup: $command is missing, so tests that need it will fail or be skipped; install $package" >&2
  fi
done

# tests/status_page_test.ts loads the admin status page in Debian's headless Chromium
# (/usr/bin/chromium, driven by puppeteer-core); where it is missing, those tests are skipped.
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing chromium with apt-get"
    apt-get update -qq >/dev/null
    # Ubuntu has no such package (GitHub's Ubuntu images carry a Chromium at /usr/bin/chromium of
    # their own, so this is not reached there); elsewhere the tests are then skipped.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null ||
      echo "setup: apt-get could not install chromium, so the status page's browser tests are skipped" >&2
  else
    echo "setup: /usr/bin/chromium is missing, so the status page's browser tests are skipped; install Debian's chromium (sudo apt-get install chromium)" >&2
  fi
fi

# tests/image_test.ts builds the container image (make image) and runs it with podman and runc as
# root; where they are missing, those tests are ignored, saying why.
# Each only where it is missing: a runc from elsewhere (GitHub's images carry moby-runc) conflicts
# with Debian's runc package.
if ! command -v podman >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
    for package in podman runc; do
      command -v "$package" >/dev/null 2>&1 && continue
      echo "setup: installing $package with apt-get"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null
    done
  else
    echo "setup: podman or runc is missing, so make image fails and the image tests are ignored; install them (Debian/Ubuntu: sudo apt-get install podman runc)" >&2
  fi
fi

# The benchmark's round-trip section (make bench, as root) compiles bench/delay_line.c, which needs
# gcc and the kernel headers of libc6-dev (linux/if_tun.h).
if ! command -v gcc >/dev/null 2>&1 || [ ! -e /usr/include/linux/if_tun.h ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing gcc and libc6-dev with apt-get"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev >/dev/null
  else
    echo "setup: gcc or /usr/include/linux/if_tun.h is missing, so make bench cannot build its delay line; install gcc and libc6-dev" >&2
  fi
fi

"$tools/bin/deno" install --frozen --quiet
