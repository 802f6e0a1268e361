#!/bin/sh
# Installs the sentinel-tunnel binary from a release:
#
#   curl -fsSL https://github.com/OWNER/sentinel-tunnel/releases/latest/download/install.sh | sh
#   curl -fsSL .../install.sh | sh -s -- --version 0.1.0 --prefix /opt/bin
#
# It picks the artifact for this OS and CPU, checks it against its published SHA-256 checksum
# and aborts on a mismatch with nothing installed. Run with --help for the options.
set -eu

# The GitHub repository (owner/name) that publishes the releases. The copy of this script attached
# to a release has it filled in by `make release`; a checkout's copy needs --base-url or an edit here.
GITHUB_REPO="CHANGE_ME/sentinel-tunnel"

NAME=sentinel-tunnel
DEFAULT_BASE_URL="https://github.com/$GITHUB_REPO/releases"

usage() {
  cat <<EOF
Usage: install.sh [--version VERSION] [--prefix DIR] [--base-url URL]

Downloads the $NAME binary for this machine, verifies its SHA-256 checksum
and installs it as DIR/$NAME.

Options:
  --version VERSION  the release to install, such as 0.1.0 (default: the latest)
  --prefix DIR       where to install (default: ~/.local/bin, or /usr/local/bin as root)
  --base-url URL     where the releases are published; files are fetched from
                     URL/latest/download/FILE or URL/download/vVERSION/FILE
                     (default: $DEFAULT_BASE_URL)
  -h, --help         show this help and exit

Environment: SENTINEL_TUNNEL_VERSION, SENTINEL_TUNNEL_PREFIX and
SENTINEL_TUNNEL_BASE_URL set the same values; options take precedence.
EOF
}

say() { printf '%s\n' "$*"; }
die() {
  printf 'install.sh: %s\n' "$*" >&2
  exit 1
}
usage_error() {
  printf 'install.sh: %s\nRun with --help for usage.\n' "$*" >&2
  exit 2
}

version=${SENTINEL_TUNNEL_VERSION:-latest}
prefix=${SENTINEL_TUNNEL_PREFIX:-}
base_url=${SENTINEL_TUNNEL_BASE_URL:-$DEFAULT_BASE_URL}

while [ $# -gt 0 ]; do
  case $1 in
    -h | --help)
      usage
      exit 0
      ;;
    --version | --prefix | --base-url)
      [ $# -ge 2 ] || usage_error "$1 needs a value"
      case $1 in
        --version) version=$2 ;;
        --prefix) prefix=$2 ;;
        --base-url) base_url=$2 ;;
      esac
      shift 2
      ;;
    --version=*) version=${1#*=} && shift ;;
    --prefix=*) prefix=${1#*=} && shift ;;
    --base-url=*) base_url=${1#*=} && shift ;;
    *) usage_error "unknown argument \"$1\"" ;;
  esac
done

[ -n "$version" ] || usage_error "--version needs a value"
[ -n "$base_url" ] || usage_error "--base-url needs a value"
case $base_url in
  */CHANGE_ME/*) die "no release repository is set in this copy of install.sh: pass --base-url https://github.com/OWNER/sentinel-tunnel/releases, or set GITHUB_REPO at its top" ;;
esac
base_url=${base_url%/}
version=${version#v}

if [ -z "$prefix" ]; then
  if [ "$(id -u)" = 0 ]; then
    prefix=/usr/local/bin
  else
    [ -n "${HOME:-}" ] || die "HOME is not set; choose a directory with --prefix"
    prefix=$HOME/.local/bin
  fi
fi

# The release target triple for this machine, as `deno compile --target` names it.
detect_target() {
  os=$(uname -s)
  arch=$(uname -m)
  case $arch in
    x86_64 | amd64) arch=x86_64 ;;
    aarch64 | arm64) arch=aarch64 ;;
    *) die "no release for the $arch architecture (there are x86_64 and aarch64 builds)" ;;
  esac
  case $os in
    Linux)
      if ldd --version 2>&1 | grep -qi musl; then
        die "this looks like a musl Linux (such as Alpine); the release binaries need glibc"
      fi
      say "$arch-unknown-linux-gnu"
      ;;
    Darwin)
      # A shell under Rosetta reports x86_64 on Apple silicon; prefer the native build.
      if [ "$arch" = x86_64 ] && [ "$(sysctl -n sysctl.proc_translated 2>/dev/null || true)" = 1 ]; then
        arch=aarch64
      fi
      say "$arch-apple-darwin"
      ;;
    MINGW* | MSYS* | CYGWIN*)
      [ "$arch" = x86_64 ] || die "no Windows release for $arch (there is an x86_64 build)"
      say "x86_64-pc-windows-msvc"
      ;;
    *) die "no release for the $os operating system (there are Linux, macOS and Windows builds)" ;;
  esac
}

target=$(detect_target)
artifact=$NAME-$target
installed_name=$NAME
case $target in
  *-windows-*)
    artifact=$artifact.exe
    installed_name=$NAME.exe
    ;;
esac

if [ "$version" = latest ]; then
  release_url=$base_url/latest/download
else
  release_url=$base_url/download/v$version
fi

# Fetches URL into FILE. Fails on HTTP errors, so a 404 page is never taken for a binary.
fetch() {
  if command -v curl >/dev/null 2>&1; then
    curl --fail --silent --show-error --location --retry 2 --output "$2" "$1"
  elif command -v wget >/dev/null 2>&1; then
    wget --quiet --output-document="$2" "$1"
  else
    die "neither curl nor wget is installed; install one of them and run again"
  fi
}

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d ' ' -f 1
  elif command -v shasum >/dev/null 2>&1; then
    shasum -a 256 "$1" | cut -d ' ' -f 1
  else
    die "neither sha256sum nor shasum is installed, so the download cannot be verified"
  fi
}

tmp_dir=$(mktemp -d 2>/dev/null || mktemp -d -t "$NAME")
staged=
cleanup() {
  rm -rf "$tmp_dir"
  if [ -n "$staged" ]; then rm -f "$staged"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "$version" = latest ]; then
  say "Downloading the latest $artifact from $release_url"
else
  say "Downloading $artifact $version from $release_url"
fi
fetch "$release_url/$artifact" "$tmp_dir/$artifact" ||
  die "cannot download $release_url/$artifact: check the version (\"$version\") and the base URL"
fetch "$release_url/$artifact.sha256" "$tmp_dir/$artifact.sha256" ||
  die "cannot download the checksum $release_url/$artifact.sha256"

expected=$(cut -d ' ' -f 1 <"$tmp_dir/$artifact.sha256" | head -n 1 | tr '[:upper:]' '[:lower:]')
case $expected in
  *[!0-9a-f]* | "") die "$artifact.sha256 holds no SHA-256 checksum" ;;
esac
[ ${#expected} -eq 64 ] || die "$artifact.sha256 holds no SHA-256 checksum"
actual=$(sha256_of "$tmp_dir/$artifact")
if [ "$actual" != "$expected" ]; then
  die "checksum mismatch for $artifact: expected $expected, got $actual; nothing was installed"
fi
say "Checksum verified: $actual"

# Stage the binary beside its final name and run it there, so that the final step is a rename
# on one filesystem and a binary that cannot run here never replaces a working one.
mkdir -p "$prefix" || die "cannot create $prefix; choose another directory with --prefix"
dest=$prefix/$installed_name
staged=$prefix/.$installed_name.install.$$
cp "$tmp_dir/$artifact" "$staged" || die "cannot write to $prefix; choose another directory with --prefix"
chmod 755 "$staged"
if ! version_line=$("$staged" --version 2>&1); then
  die "the downloaded $artifact does not run on this machine: $version_line"
fi
mv -f "$staged" "$dest"
staged=

say "Installed $dest: $version_line"
case ":${PATH:-}:" in
  *":$prefix:"*) ;;
  *) say "Note: $prefix is not on your PATH; add it, for example: export PATH=\"$prefix:\$PATH\"" ;;
esac
