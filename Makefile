# cairn: `make run` boots a node, `make test` runs every test. See README.md.
SHELL := bash
.DEFAULT_GOAL := help

# Caches live outside the clone so fresh clones (CI) reuse them.
CAIRN_CACHE ?= $(HOME)/.cache/cairn
export CARGO_TARGET_DIR ?= $(CAIRN_CACHE)/target
export CAIRN_CACHE

CONFIG ?= image/cairn.toml
IMAGE_DIR ?= build/image
STATE_DIR ?= build/node
ACCEL ?= auto
CARGO ?= cargo

IMAGE_TOOL := $(CARGO) run --quiet --release --locked -p cairn-image --
QEMU_TOOL := $(CARGO) run --quiet --release --locked -p cairn-qemu --

.PHONY: help setup image inspect run start stop test unit-test boot-test lint fmt clean

help:
	@echo "make run     build the image and boot a node in QEMU (console here; Ctrl-C stops it)"
	@echo "make start   boot a node in the background and return once it is ready"
	@echo "make stop    stop the background node"
	@echo "make test    unit tests, then boot-level tests against the built image"
	@echo "make image   build $(IMAGE_DIR) from $(CONFIG)"
	@echo "make inspect list the files of the built initramfs"
	@echo "make lint    rustfmt --check and clippy -D warnings"

setup:
	@scripts/setup-host.sh

image: setup
	$(IMAGE_TOOL) build --config $(CONFIG) --out $(IMAGE_DIR)

inspect:
	$(IMAGE_TOOL) inspect $(IMAGE_DIR)

run: image
	$(QEMU_TOOL) run --image-dir $(IMAGE_DIR) --state-dir $(STATE_DIR) --accel $(ACCEL)

start: image
	$(QEMU_TOOL) run --detach --image-dir $(IMAGE_DIR) --state-dir $(STATE_DIR) --accel $(ACCEL)

stop:
	$(QEMU_TOOL) stop --state-dir $(STATE_DIR)

test: unit-test boot-test

unit-test: setup
	$(CARGO) test --workspace --locked

# Boot-level tests (ignored by plain `cargo test`) need the image built first.
boot-test: image
	CAIRN_IMAGE_DIR=$(abspath $(IMAGE_DIR)) CAIRN_CONFIG=$(abspath $(CONFIG)) \
	  $(CARGO) test --release --locked -p cairn-image -p cairn-qemu -- --ignored

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	rm -rf build
