#!/usr/bin/env bash
# Installs what building and booting cairn needs on a Debian bookworm host, and
# nothing that is already there. Safe to run again; runs apt only when something is
# missing. Needs root (or sudo) only in that case.
set -euo pipefail

# command -> Debian package providing it
declare -A wanted=(
  [qemu-system-x86_64]=qemu-system-x86
  [qemu-img]=qemu-utils
  [git]=git
  [apt-get]=apt
  # containerd-client's build script compiles containerd's .proto files with protoc.
  [protoc]=protobuf-compiler
  # third_party/build.sh: runc is built with cgo against libseccomp.
  [pkg-config]=pkg-config
  [gcc]=gcc
  # Boot tests edit a stopped node's data disk (qemu-tests/tests/boot.rs).
  [debugfs]=e2fsprogs
)

missing=()
for cmd in "${!wanted[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${wanted[$cmd]}")
done

# The builder fetches .debs with `apt-get download`, which needs package lists. apt
# may keep them compressed (`*_Packages.lz4`, `.gz`, …): any of those counts.
lists_empty() { ! compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@";
  else echo "setup-host: need root to run: $*" >&2; exit 1; fi
}

# Headers only, so checked by file rather than by command.
[ -f /usr/include/seccomp.h ] || missing+=(libseccomp-dev)

if [ ${#missing[@]} -gt 0 ] || lists_empty; then
  echo "setup-host: updating package lists"
  as_root apt-get update -qq
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-host: installing ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
fi

# Rust comes from rustup, which reads the pinned version from rust-toolchain.toml.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rust=$(sed -n 's/^channel = "\(.*\)"$/\1/p' "$root/rust-toolchain.toml")
if ! command -v rustup >/dev/null 2>&1; then
  echo "setup-host: rustup not found: install it (https://rustup.rs) first; it then installs Rust $rust" >&2
  exit 1
fi
if ! rustup toolchain list | grep "^$rust-" >/dev/null; then
  # Offline hosts often have the same release as `stable` only: name it, don't fetch
  # it (`rustup toolchain link` refuses names like 1.95.0, so the link is made by hand,
  # in rustup's own layout).
  stable=$(cd / && rustup run stable rustc --version 2>/dev/null | awk '{print $2}')
  if [ "$stable" = "$rust" ]; then
    host=$(cd / && rustup run stable rustc -vV | sed -n 's/^host: //p')
    sysroot=$(cd / && rustup run stable rustc --print sysroot)
    echo "setup-host: Rust $rust is the installed stable toolchain; naming it $rust-$host"
    ln -sfn "$sysroot" "${RUSTUP_HOME:-$HOME/.rustup}/toolchains/$rust-$host"
  else
    echo "setup-host: installing Rust $rust (rust-toolchain.toml)"
    (cd "$root" && rustup toolchain install --no-self-update </dev/null)
  fi
fi

# `make lint` checks licenses, bans and sources of the dependencies (deny.toml); the
# version is the one deny.toml was written for. A source build: minutes on 2 cores.
deny_version=0.20.2
if ! command -v cargo-deny >/dev/null 2>&1; then
  echo "setup-host: installing cargo-deny $deny_version (crates.io)"
  (cd "$root" && cargo install --locked cargo-deny --version "$deny_version" </dev/null)
fi

# third_party/build.sh builds containerd, runc and the CNI plugins with the local Go
# (GOTOOLCHAIN=local: it never downloads one); their go.mod files need Go 1.26.
if ! command -v go >/dev/null 2>&1 && [ ! -x /usr/local/go/bin/go ]; then
  echo "setup-host: go not found: install Go 1.26 or newer (or set GO=) first" >&2
  exit 1
fi
