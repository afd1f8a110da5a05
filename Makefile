# cairn: `make run` boots a node, `make test` runs every test. See README.md.
SHELL := bash
.DEFAULT_GOAL := help

# Caches live outside the clone so fresh clones (CI) reuse them.
CAIRN_CACHE ?= $(HOME)/.cache/cairn
export CARGO_TARGET_DIR ?= $(CAIRN_CACHE)/target
export CAIRN_CACHE

CONFIG ?= image/cairn.toml
IMAGE_DIR ?= build/image
# The same node without the debug service (boot tests prove it has no listener).
PRODUCTION_CONFIG ?= image/production.toml
PRODUCTION_DIR ?= build/production
STATE_DIR ?= build/node
ACCEL ?= auto
# `make start` forwards this host port to this NodePort (README: "An application").
NODE_PORT_FORWARD ?= 30080:30080
# A per-node config for `make run`/`make start` (docs/interfaces.md "Per-node config"),
# e.g. build/registry/node.toml, which `make registry` writes.
NODE_CONFIG ?=
# A cluster segment GROUP:PORT for `make run`/`make start`: the node gets eth1 on it
# (docs/interfaces.md "Cluster network"); its node config's [cluster] gives the address.
CLUSTER_NET ?=
# `make registry`: where its CA, password and images are kept, and its host port.
REGISTRY_DIR ?= build/registry
REGISTRY_PORT ?= 5000
# The last condition a benchmarked boot waits for.
BENCH_UNTIL ?= node-ready
CARGO ?= cargo
# Cargo profile of the image's own binaries (the agent): `dev-image` rebuilds the agent
# incrementally in seconds while developing (Cargo.toml); `release` is what CI
# (.ci/run), the benchmarks and shipped images use, and what the targets below always
# build. Exported: to the builder (as CAIRN_CARGO_PROFILE), its own tests, and the
# makes that scripts and benchmarks run.
export IMAGE_PROFILE ?= dev-image
export CAIRN_CARGO_PROFILE = $(IMAGE_PROFILE)
# What is measured or proven reproducible is what ships.
bench bench-cluster profile-boot test-repro: IMAGE_PROFILE := release

IMAGE_TOOL := $(CARGO) run --quiet --release --locked -p cairn-image --
QEMU_TOOL := $(CARGO) run --quiet --release --locked -p cairn-qemu --

.PHONY: help setup image production-image inspect run start stop cluster cluster-stop registry test unit-test boot-test test-cluster test-repro test-churn soak bench bench-cluster profile-boot fuzz lint fmt clean

help:
	@echo "make run     build the image and boot a node in QEMU (console here; Ctrl-C stops it)"
	@echo "make start   boot a node in the background and return once Kubernetes is ready"
	@echo "make stop    stop the background node"
	@echo "make cluster a control-plane node and WORKERS (default 1) workers that join it, in the background (PRODUCTION=1: production images)"
	@echo "make cluster-stop  stop them"
	@echo "make registry  an OCI registry on the host for nodes to pull from (Ctrl-C stops it)"
	@echo "make test    unit tests, then boot-level tests against the built image"
	@echo "make image   build $(IMAGE_DIR) from $(CONFIG) (IMAGE_PROFILE=$(IMAGE_PROFILE))"
	@echo "make production-image  build $(PRODUCTION_DIR) from $(PRODUCTION_CONFIG)"
	@echo "make inspect list the files of the built initramfs"
	@echo "make test-repro  two clones, separate empty caches: the same image digest (slow)"
	@echo "make test-churn  the make targets' Cargo builds twice: the second pass compiles nothing"
	@echo "make test-cluster  cluster start end to end: three nodes Ready, stopped and rejoined; a production pair (slow)"
	@echo "make soak    10 restarts of a node with workloads: each reaches Ready with all back (slow)"
	@echo "make lint    rustfmt --check, clippy -D warnings, cargo deny, gofmt/go vet"
	@echo "             + gofmt/go vet of our Go in third_party/ (third_party/check.sh)"
	@echo "make bench   every benchmark -> bench/results/ and bench/RESULTS.md"
	@echo "make bench-cluster  make cluster to all Nodes Ready (1+1, 1+2), node footprints, pod network across nodes"
	@echo "make profile-boot  one profiled boot: where the control plane's start time goes"
	@echo "make fuzz    every fuzz target for FUZZ_SECONDS (default 60) each"

setup:
	@scripts/setup-host.sh

image: setup
	$(IMAGE_TOOL) build --config $(CONFIG) --out $(IMAGE_DIR)

production-image: setup
	$(IMAGE_TOOL) build --config $(PRODUCTION_CONFIG) --out $(PRODUCTION_DIR)

inspect:
	$(IMAGE_TOOL) inspect $(IMAGE_DIR)

run: image
	$(QEMU_TOOL) run --image-dir $(IMAGE_DIR) --state-dir $(STATE_DIR) --accel $(ACCEL) \
	  $(if $(NODE_CONFIG),--node-config $(NODE_CONFIG)) $(if $(CLUSTER_NET),--cluster-net $(CLUSTER_NET))

# `make start` returns once Kubernetes is usable: the `START_UNTIL` condition is true,
# printing each condition as it turns true
# (`START_UNTIL=agent`: as soon as the agent is up). If it is not within START_TIMEOUT
# seconds, it prints every condition with its reason and the last lines of the
# apiserver's and kubelet's logs, and fails (the node keeps running: `make stop`).
START_UNTIL ?= node-ready
START_TIMEOUT ?= 300
DBG_TOOL := CAIRN_STATE_DIR=$(STATE_DIR) $(CARGO) run --quiet --release --locked -p cairn-dbg --
start: image
	$(QEMU_TOOL) run --detach --image-dir $(IMAGE_DIR) --state-dir $(STATE_DIR) --accel $(ACCEL) \
	  --forward $(NODE_PORT_FORWARD) $(if $(NODE_CONFIG),--node-config $(NODE_CONFIG)) \
	  $(if $(CLUSTER_NET),--cluster-net $(CLUSTER_NET))
ifneq ($(START_UNTIL),agent)
	@echo "start: waiting up to $(START_TIMEOUT) s for $(START_UNTIL) (START_UNTIL=agent returns now)"
	@$(DBG_TOOL) conditions --wait $(START_UNTIL) --timeout $(START_TIMEOUT) --progress || { \
	  echo "start: $(START_UNTIL) is not true; the node's conditions:"; \
	  $(DBG_TOOL) conditions || exit 1; \
	  for c in kube-apiserver kubelet; do \
	    echo "--- $$c, last 20 lines"; $(DBG_TOOL) logs $$c -n 20; \
	  done; exit 1; }
endif

stop:
	$(QEMU_TOOL) stop --state-dir $(STATE_DIR)

# `make cluster`: one control-plane node and WORKERS workers that join it, each in its
# own state dir under CLUSTER_DIR (docs/interfaces.md "Clusters (launcher)"); returns
# once every node's `node-ready` is true, or prints the conditions of those that are not.
# PRODUCTION=1 boots production images (needs owner credentials: `dbg owner init`).
WORKERS ?= 1
CLUSTER_DIR ?= build/cluster
CLUSTER_DBG := CAIRN_CLUSTER_DIR=$(CLUSTER_DIR) $(CARGO) run --quiet --release --locked -p cairn-dbg --
CLUSTER_IMAGE_DIR := $(if $(PRODUCTION),$(PRODUCTION_DIR),$(IMAGE_DIR))
cluster: $(if $(PRODUCTION),production-image,image)
	$(QEMU_TOOL) cluster start --workers $(WORKERS) --dir $(CLUSTER_DIR) --image-dir $(CLUSTER_IMAGE_DIR) --accel $(ACCEL)
	@for n in control-plane $$(seq -f 'worker-%g' 1 $(WORKERS)); do \
	  echo "cluster: waiting up to $(START_TIMEOUT) s for $$n's node-ready"; \
	  $(CLUSTER_DBG) --node $$n conditions --wait node-ready --timeout $(START_TIMEOUT) --progress || { \
	    echo "cluster: $$n is not ready; its conditions:"; $(CLUSTER_DBG) --node $$n conditions; exit 1; }; \
	done
	$(CLUSTER_DBG) --node control-plane kubectl get nodes -o wide

cluster-stop:
	$(QEMU_TOOL) cluster stop --dir $(CLUSTER_DIR)

# The registry and crane are built from third_party/ on first use (host tools).
registry: setup
	$(QEMU_TOOL) registry --dir $(REGISTRY_DIR) --port $(REGISTRY_PORT) --go-out $(CAIRN_CACHE)/go-out

test: unit-test boot-test

# --all-features: the debug service's tests are behind the agent's feature.
unit-test: setup
	$(CARGO) test --workspace --all-features --locked
	third_party/check.sh test

# Reproducibility across checkouts and caches (scripts/test-repro.sh): builds HEAD
# twice from nothing, so it takes two cold builds; .ci/run when time allows.
test-repro: setup
	scripts/test-repro.sh

# No rebuild churn (bench/src/churn.rs): the Cargo builds of test, lint, image,
# production-image, run and bench, three passes; fails if a pass after the first
# compiles anything. Figures in bench/results/churn.md. A few minutes when warm.
test-churn: setup
	$(CARGO) run --quiet --release --locked -p cairn-bench -- --image-dir $(IMAGE_DIR) \
	  --config $(CONFIG) --accel $(ACCEL) churn --check

# Boot-level tests (ignored by plain `cargo test`) need the image built first, and
# the `dbg` binary they run (qemu-tests/tests/kubernetes_pods.rs).
boot-test: image production-image
	$(CARGO) build --release --locked -p cairn-dbg
	CAIRN_IMAGE_DIR=$(abspath $(IMAGE_DIR)) CAIRN_CONFIG=$(abspath $(CONFIG)) \
	  CAIRN_PRODUCTION_IMAGE_DIR=$(abspath $(PRODUCTION_DIR)) \
	  $(CARGO) test --release --locked -p cairn-image -p cairn-qemu -- --ignored \
	  --skip $(SOAK_TEST) --skip $(CLUSTER_TEST)

# `cairn-qemu cluster start` end to end (qemu-tests/tests/cluster_three.rs): three
# debug-image nodes started twice (the second time the workers rejoin without tokens),
# then a production control plane and worker joined through the owner's node API. TCG
# guests, several minutes, one test at a time; not part of `make test` (which skips
# every test named CLUSTER_TEST); .ci/run when time allows.
CLUSTER_TEST := from_cluster_start
test-cluster: image production-image
	$(CARGO) build --release --locked -p cairn-dbg
	CAIRN_IMAGE_DIR=$(abspath $(IMAGE_DIR)) CAIRN_PRODUCTION_IMAGE_DIR=$(abspath $(PRODUCTION_DIR)) \
	  $(CARGO) test --release --locked -p cairn-qemu --test cluster_three -- --ignored --test-threads=1

# The restart soak (qemu-tests/tests/soak.rs): SOAK_CYCLES restarts of a node running
# a Deployment, a Job and a pod with volumes; each must reach node-ready with every
# workload back. About 2 minutes per cycle under TCG, so not part of `make test`.
SOAK_TEST := every_restart_reaches_ready_with_all_workloads_back
SOAK_CYCLES ?= 10
soak: image
	CAIRN_IMAGE_DIR=$(abspath $(IMAGE_DIR)) CAIRN_CONFIG=$(abspath $(CONFIG)) \
	  CAIRN_SOAK_CYCLES=$(SOAK_CYCLES) \
	  $(CARGO) test --release --locked -p cairn-qemu --test soak -- --ignored --nocapture

# Benchmarks write figures, never fail on them (bench/README.md): every benchmark in
# one run, then bench/RESULTS.md. Knobs: boots per accelerator, runs per assembly case
# (tool x compressor x cold/warm), `make image` runs per rebuild case, the idle soak
# of the footprint benchmark, and BENCH_COLD=1 for a cold Go build (minutes).
BENCH_BOOTS ?= 5
BENCH_ASSEMBLY_RUNS ?= 3
BENCH_REBUILD_RUNS ?= 2
BENCH_SOAK_SECONDS ?= 600
BENCH_TOOL := $(CARGO) run --quiet --release --locked -p cairn-bench -- --image-dir $(IMAGE_DIR) --config $(CONFIG) --accel $(ACCEL)
# The cluster benchmark runs the launcher binary built beside cairn-bench.
bench: image
	$(CARGO) build --release --locked -p cairn-qemu
	$(BENCH_TOOL) all --boots $(BENCH_BOOTS) --until $(BENCH_UNTIL) \
	  --assembly-runs $(BENCH_ASSEMBLY_RUNS) --rebuild-runs $(BENCH_REBUILD_RUNS) \
	  --soak-seconds $(BENCH_SOAK_SECONDS) $(if $(BENCH_COLD),--go-cold)

# `make cluster` timed to every Node Ready (1+1 and 1+2 nodes), each node's footprint
# and pod-to-pod latency and throughput on one node and across two
# (bench/results/cluster.md).
bench-cluster: image
	$(CARGO) build --release --locked -p cairn-qemu
	$(BENCH_TOOL) cluster

# Go init traces, the apiserver's readyz checks and CPU profile of one boot
# (bench/results/boot-profile.md); needs debugfs (e2fsprogs) and go on the host.
profile-boot: image
	$(BENCH_TOOL) profile-boot

# Fuzzing needs nightly (rustup) and cargo-fuzz (from crates.io, installed if missing).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := cpio_read deb_open deb_control os_release kernel_cmdline_ip image_config image_archive node_config api_requests
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install --locked cargo-fuzz
	cd fuzz && for target in $(FUZZ_TARGETS); do \
	  $(CARGO) +nightly fuzz run --target-dir $(CAIRN_CACHE)/fuzz-target $$target -- \
	    -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 || exit 1; \
	done

# cargo-deny: bans, licenses and sources (docs/supply-chain.md). setup-host installs
# it, and names the pinned Rust toolchain before any cargo call reads rust-toolchain.toml.
lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	$(CARGO) clippy --workspace --all-targets --all-features --locked -- -D warnings
	third_party/check.sh lint
	$(CARGO) deny --locked check bans licenses sources

fmt:
	$(CARGO) fmt --all

clean:
	rm -rf build
