#!/usr/bin/env bash
# Checks of the Go code cairn writes itself in third_party/ (not upstream's):
# kubernetes/cmd/kube/main.go, the files under kubernetes/overlay/ and
# coredns/cmd/coredns/main.go.
#
# usage: third_party/check.sh lint    gofmt -l (must print nothing) + go vet
#        third_party/check.sh test    go test of the overlay packages
#
# The overlay packages are checked in a scratch module outside the repository,
# not in build.sh's vendored tree: preparing that tree (go mod vendor of all
# of Kubernetes, then compiling the dependencies for type information) takes
# minutes, this takes seconds. The scratch module is kubernetes/go.mod and
# go.sum with another module path, so every dependency has exactly the version
# the kube build uses, and -mod=readonly holds. Each overlay package directory
# (overlay/vendor/<import path>/) is copied there with only its overlay files,
# so an overlay file must compile without the rest of its upstream package;
# the one we have does (it uses only the standard library, x/sys and klog).
# The real package context is checked by every build.sh run, which compiles
# the overlay together with the patched upstream files and then runs go vet
# on that package and on cmd/kube in the vendored tree.
# coredns/cmd/coredns is vetted in place (its module is small and has no
# vendored tree or patches), with build.sh's CGO_ENABLED and tags so the
# build's compiled dependencies are reused.
# Environment knobs as in build.sh: GO (go binary). Go caches stay where Go
# puts them, never in the repo.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
k8s="$here/kubernetes"
coredns="$here/coredns"

if [[ -z "${GO:-}" ]]; then
	GO="$(command -v go || true)"
	[[ -n "$GO" ]] || GO=/usr/local/go/bin/go
fi
[[ -x "$GO" ]] || { echo "check.sh: no go binary (set GO=)" >&2; exit 2; }
export GOTOOLCHAIN=local GOWORK=off GOFLAGS=-mod=readonly GOOS=linux

# Our Go files: cmd/ and everything in the overlay (tests included).
own_go_files() {
	(cd "$k8s" && find cmd overlay -type f -name '*.go' | LC_ALL=C sort)
}
coredns_go_files() {
	(cd "$coredns" && find cmd -type f -name '*.go' | LC_ALL=C sort)
}

# Scratch module with the overlay packages; prints its directory.
scratch=""
make_scratch() {
	scratch="$(mktemp -d "${TMPDIR:-/tmp}/cairn-overlay.XXXXXX")"
	trap 'rm -rf "$scratch"' EXIT
	sed 's|^module .*|module cairn.invalid/third_party/kubernetes/overlaytest|' \
		"$k8s/go.mod" >"$scratch/go.mod"
	cp "$k8s/go.sum" "$scratch/go.sum"
	local f dir
	while IFS= read -r f; do
		dir="$(dirname "${f#vendor/}")"
		mkdir -p "$scratch/$dir"
		cp "$k8s/overlay/$f" "$scratch/$dir/"
	done < <(cd "$k8s/overlay" && find vendor -type f -name '*.go' | LC_ALL=C sort)
}

case "${1:-}" in
lint)
	gofmt="$("$GO" env GOROOT)/bin/gofmt"
	unformatted="$(cd "$k8s" && own_go_files | xargs "$gofmt" -l)"
	if [[ -n "$unformatted" ]]; then
		echo "check.sh: not gofmt-formatted (run gofmt -w on them), in third_party/kubernetes:" >&2
		echo "$unformatted" >&2
		exit 1
	fi
	unformatted="$(cd "$coredns" && coredns_go_files | xargs "$gofmt" -l)"
	if [[ -n "$unformatted" ]]; then
		echo "check.sh: not gofmt-formatted (run gofmt -w on them), in third_party/coredns:" >&2
		echo "$unformatted" >&2
		exit 1
	fi
	make_scratch
	(cd "$scratch" && nice -n 19 "$GO" vet ./...)
	(cd "$coredns" && CGO_ENABLED=0 nice -n 19 "$GO" vet -tags grpcnotrace ./cmd/...)
	echo "check.sh: gofmt and go vet clean ($(($(own_go_files | wc -l) + $(coredns_go_files | wc -l))) files)"
	;;
test)
	make_scratch
	(cd "$scratch" && nice -n 19 "$GO" test -count=1 ./...)
	;;
*)
	echo "usage: $0 lint|test" >&2
	exit 2
	;;
esac
