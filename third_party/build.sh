#!/usr/bin/env bash
# Build the upstream Go components cairn ships (containerd, runc, CNI plugins,
# CoreDNS, and the Kubernetes + etcd multiplexer `kube`) from the pinned
# modules in third_party/<family>/go.mod, and, only when named, two host-side
# tools the test harness runs on the build host (never put in an image): the
# CNCF registry server and crane.
#
# usage: third_party/build.sh [OUT_DIR] [FAMILY...]
#   OUT_DIR   default: $HOME/.cache/cairn/go-out ("" also means the default);
#             must be outside the repository
#   FAMILY    node families: containerd runc cni-plugins coredns kubernetes
#             host tools:    distribution crane
#             Without FAMILY, exactly the node families are built (what the
#             image builder, image/src/gobuild.rs, needs). Named families are
#             built in the order listed above; an unknown name is an error.
#
# Output:
#   OUT_DIR/bin/{containerd,containerd-shim-runc-v2,ctr,runc,coredns,kube}
#   OUT_DIR/cni/bin/{bridge,host-local,loopback,portmap}
#   OUT_DIR/bin/{registry,crane}           (families distribution, crane)
#   OUT_DIR/.stamps/<family>.stamp     input hash of the last successful build
#   OUT_DIR/.src/kubernetes            patched, vendored build tree (scratch)
#
# A family is rebuilt only when its stamp (go.mod, go.sum, this script, Go
# version, target, C toolchain for cgo families, coredns' and kubernetes'
# cmd/, kubernetes' patches and overlay) changed or an output is missing.
# Environment knobs: GO (go binary), GOARCH (default: host), CC.
# Go caches stay where Go puts them (GOMODCACHE/GOCACHE), never in the repo.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
script="$here/$(basename "${BASH_SOURCE[0]}")"

node_families=(containerd runc cni-plugins coredns kubernetes)
host_families=(distribution crane)
all_families=("${node_families[@]}" "${host_families[@]}")
in_list() { # word, list... -> whether word is in the list
	local w="$1" x; shift
	for x in "$@"; do [[ "$x" == "$w" ]] && return 0; done
	return 1
}

out_arg="${1:-}"
(($# == 0)) || shift
if in_list "$out_arg" "${all_families[@]}"; then
	echo "build.sh: the first argument is OUT_DIR, not a family ('$out_arg'); usage: build.sh [OUT_DIR] [FAMILY...] (\"\" for the default OUT_DIR)" >&2
	exit 2
fi
if (($#)); then requested=("$@"); else requested=("${node_families[@]}"); fi
for f in "${requested[@]}"; do
	if ! in_list "$f" "${all_families[@]}"; then
		echo "build.sh: unknown family '$f'; valid: ${all_families[*]}" >&2
		exit 2
	fi
done
selected() { in_list "$1" "${requested[@]}"; }

out="$(realpath -m -- "${out_arg:-${HOME}/.cache/cairn/go-out}")"

case "$out/" in
"$here"/* | "$(dirname "$here")"/*)
	echo "build.sh: OUT_DIR must be outside the repository: $out" >&2
	exit 2
	;;
esac
mkdir -p "$out"

# The kube build needs our patches: an empty patches/ would silently build an
# unpatched kubelet (one that execs mount(8), absent from the image).
k8s_patches=("$here"/kubernetes/patches/*.patch)
if selected kubernetes && [[ ! -f "${k8s_patches[0]}" ]]; then
	echo "build.sh: no patches in $here/kubernetes/patches/*.patch; the kube build needs them (third_party/README.md)" >&2
	exit 1
fi

if [[ -z "${GO:-}" ]]; then
	GO="$(command -v go || true)"
	[[ -n "$GO" ]] || GO=/usr/local/go/bin/go
fi
[[ -x "$GO" ]] || { echo "build.sh: no go binary (set GO=)" >&2; exit 2; }

# Never download a toolchain; ignore any go.work above us; go.mod/go.sum are
# committed and must not be edited by a build.
export GOTOOLCHAIN=local GOWORK=off GOFLAGS=-mod=readonly GOOS=linux
export GOARCH="${GOARCH:-$("$GO" env GOARCH)}"
go_version="$("$GO" version)"

# Flags shared by every family. -buildid= and -trimpath make the output
# independent of paths and cache state.
common_flags=(-trimpath -buildvcs=false)
common_ldflags="-s -w -buildid="

mod_version() { # module path, go.mod -> pinned version
	awk -v m="$1" '$1 == m { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' "$2"
}

stamp_of() { # family dir, extra text -> sha256 of all build inputs
	local dir="$1" extra="$2"
	{
		printf 'script\n'; cat "$script"
		printf 'go.mod\n'; cat "$dir/go.mod"
		printf 'go.sum\n'; cat "$dir/go.sum"
		printf 'go %s\nGOOS=%s GOARCH=%s\n%s\n' "$go_version" "$GOOS" "$GOARCH" "$extra"
	} | sha256sum | cut -d' ' -f1
}

gobuild() { # runs in the family dir
	nice -n 19 "$GO" build "${common_flags[@]}" "$@"
}

# family name, stamp extra, output dir, binaries..., then "--" and the build
# function name. Skips when stamp matches and all binaries exist.
run_family() {
	local fam="$1" extra="$2" dest="$3"; shift 3
	local bins=()
	while [[ "$1" != "--" ]]; do bins+=("$1"); shift; done
	shift
	local builder="$1"
	local dir="$here/$fam" stampfile="$out/.stamps/$fam.stamp"
	local stamp; stamp="$(stamp_of "$dir" "$extra")"
	local ok=1 b
	for b in "${bins[@]}"; do [[ -x "$dest/$b" ]] || ok=0; done
	if [[ $ok == 1 && -f "$stampfile" && "$(cat "$stampfile")" == "$stamp" ]]; then
		echo "$fam: up to date ($dest: ${bins[*]})"
		return 0
	fi
	local t0=$SECONDS tmp="$out/.tmp-$fam"
	rm -rf "$tmp" "$stampfile"
	mkdir -p "$tmp" "$dest" "$out/.stamps"
	(cd "$dir" && "$builder" "$tmp")
	for b in "${bins[@]}"; do
		[[ -x "$tmp/$b" ]] || { echo "build.sh: $fam did not produce $b" >&2; exit 1; }
		mv -f "$tmp/$b" "$dest/$b"
	done
	rm -rf "$tmp"
	echo "$stamp" >"$stampfile"
	echo "$fam: built in $((SECONDS - t0))s ($dest: ${bins[*]})"
}

# --- containerd: containerd + ctr, and the runc shim (static, CGO off) ------
ctrd_pkg=github.com/containerd/containerd/v2
build_containerd() {
	local tmp="$1" v; v="$(mod_version "$ctrd_pkg" go.mod)"
	# Same -X variables as upstream's Makefile; Revision (a git hash) is not
	# known from a module download, so it stays empty as in upstream's default.
	local ld="$common_ldflags -X $ctrd_pkg/version.Version=$v -X $ctrd_pkg/version.Revision= -X $ctrd_pkg/version.Package=$ctrd_pkg"
	CGO_ENABLED=0 gobuild -tags "urfave_cli_no_docs" -ldflags "$ld" -o "$tmp/" \
		"$ctrd_pkg/cmd/containerd" "$ctrd_pkg/cmd/ctr"
	CGO_ENABLED=0 gobuild -tags "urfave_cli_no_docs no_grpc" -ldflags "$ld" -o "$tmp/" \
		"$ctrd_pkg/cmd/containerd-shim-runc-v2"
}

# --- runc: cgo + libseccomp, dynamic PIE as upstream's default build --------
build_runc() {
	local tmp="$1"
	# Upstream's default tags minus libpathrs (a Rust C library we do not
	# build); runc then uses its pure-Go pathrs-lite fallback.
	CGO_ENABLED=1 gobuild -buildmode=pie -tags "seccomp urfave_cli_no_docs" \
		-ldflags "$common_ldflags" -o "$tmp/runc" github.com/opencontainers/runc
}

# --- CNI plugins (static, CGO off) ------------------------------------------
cni_pkg=github.com/containernetworking/plugins
build_cni() {
	local tmp="$1" v; v="$(mod_version "$cni_pkg" go.mod)"
	CGO_ENABLED=0 gobuild -ldflags "$common_ldflags -X $cni_pkg/pkg/utils/buildversion.BuildVersion=$v" \
		-o "$tmp/" "$cni_pkg/plugins/main/bridge" "$cni_pkg/plugins/ipam/host-local" \
		"$cni_pkg/plugins/main/loopback" "$cni_pkg/plugins/meta/portmap"
}

# One function per family, fam_<family> ('-' as '_'), run at the end of the
# script for the selected families.
fam_containerd() {
	run_family containerd "" "$out/bin" containerd containerd-shim-runc-v2 ctr -- build_containerd
}

fam_runc() {
	local cc="${CC:-gcc}"
	if ! pkg-config --exists libseccomp 2>/dev/null; then
		echo "build.sh: runc needs libseccomp headers (Debian: apt-get install libseccomp-dev pkg-config)" >&2
		exit 1
	fi
	local extra
	extra="cc: $("$cc" --version | head -n1)
libseccomp: $(pkg-config --modversion libseccomp)"
	run_family runc "$extra" "$out/bin" runc -- build_runc
}

fam_cni_plugins() {
	run_family cni-plugins "" "$out/cni/bin" bridge host-local loopback portmap -- build_cni
}

# --- coredns: our own main package (coredns/cmd/coredns) with only the
# plugins cluster DNS needs, instead of upstream's root package with all of
# plugin.cfg (static, CGO off).
build_coredns() {
	local tmp="$1"
	# Upstream's Makefile: CGO_ENABLED=0, tag grpcnotrace, and -X of
	# coremain.GitCommit, a git hash a module download does not carry, so it
	# stays empty. The version (1.15.0) is a constant in coremain.
	CGO_ENABLED=0 gobuild -tags grpcnotrace \
		-ldflags "$common_ldflags -X github.com/coredns/coredns/coremain.GitCommit=" \
		-o "$tmp/coredns" ./cmd/coredns
}

fam_coredns() {
	local extra; extra="$(cd "$here/coredns" && find cmd -type f | LC_ALL=C sort | xargs sha256sum)"
	run_family coredns "$extra" "$out/bin" coredns -- build_coredns
}

# --- kubernetes: one static multiplexer `kube` (apiserver, controller-manager,
# scheduler, kubelet, kube-proxy, kubectl, etcd), built from a vendored copy with our
# patches (kubernetes/patches/*.patch) applied, then our own files
# (kubernetes/overlay/, same layout as the build tree) added. The copy lives
# outside the repository, under OUT_DIR/.src; the family dir itself is never
# modified.
k8s_pkg=k8s.io/kubernetes
k8s_tags="selinux,notest,grpcnotrace" # upstream's release tags (hack/lib/golang.sh)

# Applies one patch in the current directory, or fails naming it: a dry run
# first, so a patch that does not apply leaves no half-patched tree or .rej
# files; --fuzz=0 refuses hunks whose context changed (offsets are fine).
apply_patch() {
	local p="$1" name="kubernetes/patches/$(basename "$1")" log
	echo "kubernetes: applying $(basename "$p")"
	local args=(-p1 --batch --forward --fuzz=0 --no-backup-if-mismatch)
	if ! log="$(patch "${args[@]}" --dry-run <"$p" 2>&1)"; then
		printf '%s\n' "$log" >&2
		echo "build.sh: $name does not apply cleanly to the vendored tree ($PWD)" >&2
		return 1
	fi
	if ! patch "${args[@]}" --quiet <"$p"; then
		echo "build.sh: $name failed to apply after a clean dry run ($PWD)" >&2
		return 1
	fi
}

# Copies kubernetes/overlay/* to the same path in the build tree. Each file
# must be new there (an upstream file of that name would be overwritten) and
# its directory must exist (the package is vendored).
copy_overlay() {
	local f
	while IFS= read -r f; do
		if [[ -e "$f" ]]; then
			echo "build.sh: kubernetes/overlay/$f would overwrite $f in the vendored tree ($PWD); upstream has such a file now" >&2
			return 1
		fi
		if [[ ! -d "$(dirname "$f")" ]]; then
			echo "build.sh: kubernetes/overlay/$f: $(dirname "$f") is not in the vendored tree ($PWD)" >&2
			return 1
		fi
		echo "kubernetes: adding overlay/$f"
		cp "$here/kubernetes/overlay/$f" "$f"
	done < <(cd "$here/kubernetes/overlay" && find . -type f -printf '%P\n' | LC_ALL=C sort)
}

build_kubernetes() {
	local tmp="$1" src="$out/.src/kubernetes" v p
	v="$(mod_version "$k8s_pkg" go.mod)"
	# buildDate: the release's commit time from the module proxy's .info, so
	# the binary is reproducible and still carries a meaningful date.
	local date; date="$("$GO" list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' "$k8s_pkg")"
	local major="${v#v}"; major="${major%%.*}"
	local minor="${v#v*.}"; minor="${minor%%.*}"
	rm -rf "$src"
	mkdir -p "$src"
	cp -R go.mod go.sum cmd "$src/"
	(
		cd "$src"
		GOFLAGS= "$GO" mod vendor
		for p in "${k8s_patches[@]}"; do
			apply_patch "$p" || exit 1
		done
		copy_overlay || exit 1
		# Same -X variables as upstream's hack/lib/version.sh; gitCommit and
		# gitTreeState stay unset as for any build without a git tree.
		local ld="$common_ldflags" pkg var
		for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
			for var in "gitVersion=$v" "gitMajor=$major" "gitMinor=$minor" "buildDate=$date"; do
				ld+=" -X $pkg.$var"
			done
		done
		CGO_ENABLED=0 gobuild -mod=vendor -tags "$k8s_tags" \
			-ldflags "$ld" -o "$tmp/kube" ./cmd/kube
		# go vet of the Go we own (cmd/kube, the patched mount-utils with our
		# overlay) in its real package context, with the build's flags so the
		# compiled dependencies are reused. vet also derives facts from every
		# dependency: about 3 min on an empty cache (after a ~17 min cold
		# build, 2 cores), seconds when only our packages changed.
		CGO_ENABLED=0 nice -n 19 "$GO" vet "${common_flags[@]}" -mod=vendor -tags "$k8s_tags" \
			./cmd/kube/... k8s.io/mount-utils || { echo "build.sh: go vet failed in $src" >&2; exit 1; }
	)
}

fam_kubernetes() {
	local extra; extra="$(cd "$here/kubernetes" && find cmd patches overlay -type f | LC_ALL=C sort | xargs sha256sum)
patch: $(patch --version | head -n1)"
	run_family kubernetes "$extra" "$out/bin" kube -- build_kubernetes
}

# --- host tools: built only when named, never part of an image. The test
# harness runs the registry on the host and pushes images to it with crane.

# distribution: the CNCF registry server `registry` (static, CGO off).
dist_pkg=github.com/distribution/distribution/v3
build_distribution() {
	local tmp="$1" v; v="$(mod_version "$dist_pkg" go.mod)"
	# As upstream's release build (its Dockerfile): CGO_ENABLED=0, no tags,
	# -X of version.version (the tag without its "v"), version.revision (a
	# git hash a module download does not carry, so empty) and
	# version.mainpkg. `registry --version` prints the version.
	local ld="$common_ldflags -X $dist_pkg/version.version=${v#v} -X $dist_pkg/version.revision= -X $dist_pkg/version.mainpkg=$dist_pkg"
	CGO_ENABLED=0 gobuild -ldflags "$ld" -o "$tmp/registry" "$dist_pkg/cmd/registry"
}
fam_distribution() {
	run_family distribution "" "$out/bin" registry -- build_distribution
}

# crane: go-containerregistry's registry client (static, CGO off).
ggcr_pkg=github.com/google/go-containerregistry
build_crane() {
	local tmp="$1" v; v="$(mod_version "$ggcr_pkg" go.mod)"
	# As upstream's .goreleaser.yml: CGO_ENABLED=0, -X of the version (the tag
	# without its "v") for `crane version` and for the User-Agent.
	local ld="$common_ldflags -X $ggcr_pkg/cmd/crane/cmd.Version=${v#v} -X $ggcr_pkg/pkg/v1/remote/transport.Version=${v#v}"
	CGO_ENABLED=0 gobuild -ldflags "$ld" -o "$tmp/crane" "$ggcr_pkg/cmd/crane"
}
fam_crane() {
	run_family crane "" "$out/bin" crane -- build_crane
}

# --- run the selected families, in the order of all_families ---------------
run=()
for f in "${all_families[@]}"; do
	if selected "$f"; then run+=("$f"); fi
done
echo "build.sh: building ${run[*]} into $out"
for f in "${run[@]}"; do
	"fam_${f//-/_}"
done
