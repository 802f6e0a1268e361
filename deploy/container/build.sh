#!/usr/bin/env bash
# `make image`: builds the container image sentinel-tunnel:VERSION (and :latest) from this
# checkout's bundle (dist/sentinel-tunnel.js, the bytes `make test` runs), the pinned Deno in
# .tools/ and exactly the shared libraries that Deno links (ldd), on an empty base (FROM scratch).
# Needs podman; as root it uses deploy/container/containers.conf unless CONTAINERS_CONF is set.
# IMAGE (default sentinel-tunnel) names the image; IMAGE_SOURCE, or GITHUB_REPOSITORY as GitHub
# Actions sets it, gives the org.opencontainers.image.source label. Prints the image id last.
set -euo pipefail
export RUST_BACKTRACE=0
cd "$(dirname "$0")/../.."

image=${IMAGE:-sentinel-tunnel}
version=$(.tools/bin/deno eval 'console.log(JSON.parse(Deno.readTextFileSync("deno.json")).version)')
bundle=dist/sentinel-tunnel.js
deno=$(readlink -f .tools/bin/deno)
context=dist/image

command -v podman >/dev/null 2>&1 || {
  echo "make image: podman is missing; install it (Debian/Ubuntu: sudo apt-get install podman runc) or run make setup as root" >&2
  exit 1
}
[ -f "$bundle" ] || { echo "make image: $bundle is missing; run make bundle" >&2; exit 1; }
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/deploy/container/containers.conf}

rm -rf "$context"
root=$context/rootfs
mkdir -p "$root/usr/bin" "$root/app" "$root/etc" "$root/tmp"
chmod 1777 "$root/tmp"
install -m 755 "$deno" "$root/usr/bin/deno"
install -m 644 "$bundle" "$root/app/sentinel-tunnel.js"

# Every library the dynamic linker loads for Deno, and the linker itself, at the paths ldd names.
# glibc 2.34 and later carries the files and DNS name services in libc itself, so no libnss_* is
# dlopen()ed to resolve a Sentinel's host name.
libraries=$(ldd "$deno" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
[ -n "$libraries" ] || { echo "make image: ldd found no libraries for $deno" >&2; exit 1; }
for library in $libraries; do
  mkdir -p "$root$(dirname "$library")"
  cp -L "$library" "$root$library"
done

cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:sentinel-tunnel:/tmp:/sbin/nologin
PASSWD
cat >"$root/etc/group" <<'GROUP'
root:x:0:
nonroot:x:65532:
GROUP
# Host names from /etc/hosts (which the container runtime provides), then DNS.
echo "hosts: files dns" >"$root/etc/nsswitch.conf"
cp deploy/container/Containerfile "$context/Containerfile"

# safe.directory: root (sudo) may build from a checkout that another user owns.
git() { command git -c safe.directory="$PWD" "$@"; }
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ "$revision" != unknown ] && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  revision="$revision-dirty"
fi
source=${IMAGE_SOURCE:-}
if [ -z "$source" ] && [ -n "${GITHUB_REPOSITORY:-}" ]; then
  source="${GITHUB_SERVER_URL:-https://github.com}/$GITHUB_REPOSITORY"
fi
labels=(
  --label "org.opencontainers.image.title=sentinel-tunnel"
  --label "org.opencontainers.image.description=Redis clients to the Sentinel-confirmed master through a local port"
  --label "org.opencontainers.image.version=$version"
  --label "org.opencontainers.image.revision=$revision"
  --label "org.opencontainers.image.source=${source:-unknown (a local build; set IMAGE_SOURCE)}"
  --label "io.github.sentinel-tunnel.deno-version=$(cat .deno-version)"
)
previous=$(podman image inspect --format '{{.Id}}' "$image:$version" 2>/dev/null || true)
podman build --quiet --pull=never --timestamp 0 "${labels[@]}" \
  --tag "$image:$version" --tag "$image:latest" "$context" >"$context/image-id"
id=$(cat "$context/image-id")
# The image this build replaced, unless something else still uses it: 100 MB a build otherwise.
if [ -n "$previous" ] && [ "$previous" != "$id" ]; then
  podman rmi "$previous" >/dev/null 2>&1 || true
fi
size=$(podman image inspect --format '{{.Size}}' "$id")
echo "make image: $image:$version ($image:latest), $((size / 1000000)) MB, Deno $(cat .deno-version), bundle sha256 $(sha256sum "$bundle" | cut -c1-12)" >&2
echo "$id"
