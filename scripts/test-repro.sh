#!/usr/bin/env bash
# Reproducibility across machines, approximated on one: two clones of this commit at
# paths of different lengths, each with its own empty Cargo home (registry), Cargo
# target directory, Go build and module caches and cairn cache (Debian packages, Go
# output), build the image; the two image digests must be equal, and so must the bytes
# of every output file. A difference names the files whose sha256 differs.
#
# usage: scripts/test-repro.sh [WORK_DIR]     (default: a new directory under /tmp)
#
# Slow: everything is built twice from nothing, Debian packages and modules fetched
# included: 16-20 min a side, 37 min in all on 2 cores (2026-12-07). `make test-repro`
# runs it; .ci/run does when its time budget allows.
# Uncommitted changes are not part of the test: it builds HEAD.
set -euo pipefail

root="$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)"
commit="$(git -C "$root" rev-parse HEAD)"
work="${1:-$(mktemp -d /tmp/cairn-repro.XXXXXX)}"
config="${CONFIG:-image/cairn.toml}"
mkdir -p "$work"

build_side() { # name, checkout path
	local side="$1" src="$2" caches="$work/$1-caches"
	rm -rf "$src" "$caches"
	mkdir -p "$caches" "$(dirname "$src")"
	git clone --quiet --no-hardlinks "$root" "$src"
	git -C "$src" checkout --quiet --detach "$commit"
	echo "test-repro: building side $side in $src"
	local started=$SECONDS
	(
		cd "$src"
		# The rustup proxies stay where they are (PATH, RUSTUP_HOME); only the
		# registry, the target directory and the Go caches are new and empty.
		env CARGO_HOME="$caches/cargo-home" \
			CARGO_TARGET_DIR="$caches/target" \
			CAIRN_CACHE="$caches/cairn" \
			GOCACHE="$caches/go-build" \
			GOMODCACHE="$caches/go-mod" \
			make --no-print-directory image CONFIG="$config" IMAGE_DIR=build/image
	) >"$work/$side.log" 2>&1 || {
		echo "test-repro: side $side failed to build; last lines of $work/$side.log:" >&2
		tail -n 40 "$work/$side.log" >&2
		exit 1
	}
	echo "test-repro: side $side built in $((SECONDS - started)) s"
}

build_side a "$work/a/cairn"
build_side b "$work/second-checkout/of/cairn"

digest() { sed -n 's/.*"image_digest": *"\([^"]*\)".*/\1/p' "$1/build/image/manifest.json"; }
a="$(digest "$work/a/cairn")"
b="$(digest "$work/second-checkout/of/cairn")"
echo "test-repro: image digests $a / $b"
status=0
for file in vmlinuz initramfs.img cmdline manifest.json; do
	if ! cmp -s "$work/a/cairn/build/image/$file" "$work/second-checkout/of/cairn/build/image/$file"; then
		echo "test-repro: $file differs" >&2
		status=1
	fi
done
if [[ -z "$a" || "$a" != "$b" || $status != 0 ]]; then
	echo "test-repro: the two builds differ; files whose sha256 differs:" >&2
	diff <(grep -o '"path": *"[^"]*"\|"sha256": *"[^"]*"' "$work/a/cairn/build/image/manifest.json" | paste - -) \
		<(grep -o '"path": *"[^"]*"\|"sha256": *"[^"]*"' "$work/second-checkout/of/cairn/build/image/manifest.json" | paste - -) >&2 || true
	echo "test-repro: kept $work for inspection" >&2
	exit 1
fi
echo "test-repro: identical ($a)"
rm -rf "$work"
