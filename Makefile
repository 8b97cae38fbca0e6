# tidemark: `make demo` runs the main job end to end on the local stack; `make test` runs everything CI checks.
SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/tidemark-target
CARGO ?= cargo

.PHONY: all build venv stack-up stack-down demo test test-rust fmt-check bench bench-delta

all: build

venv:
	infra/stack.sh venv

build:
	$(CARGO) build --workspace --bins

stack-up:
	infra/stack.sh up

stack-down:
	infra/stack.sh down

## The main job end to end: starts its own local stack on free loopback ports.
demo: venv
	$(CARGO) build -p tidemark-cli -p tidemark-e2e --bins
	$(CARGO_TARGET_DIR)/debug/tidemark-demo

## Everything CI checks (the e2e API test runs schemathesis from .venv-api, the catalog test
## DuckDB from .venv-catalog).
test: venv api-venv catalog-venv fmt-check test-rust iac-test

fmt-check:
	$(CARGO) fmt --all -- --check

test-rust:
	$(CARGO) build -p tidemark-cli --bins
	$(CARGO) test --workspace --no-fail-fast

## Benchmarks (not tests): report in bench-report.md.
bench: venv
	$(CARGO) build --release -p tidemark-cli -p tidemark-e2e -p tidemark-testkit --bins
	set -o pipefail; $(CARGO_TARGET_DIR)/release/tidemark-bench | tee bench-report.md

## Delta-path load test: changes at TIDEMARK_BENCH_DELTA_RATE (default 278/s) for
## TIDEMARK_BENCH_DELTA_SECONDS (default 600) through S3 → EventBridge → delta queue → delta
## handlers → sealed points, on MiniStack (TIDEMARK_BENCH_DELTA_STACK=moto: on moto, at 25/s);
## latency, RPO, exactness at every point and byte-level restores in bench-delta-report.md with
## bench-delta-plot.svg. TIDEMARK_BENCH_DELTA_RAMP=300,400,… finds the largest sustained rate
## (bench-delta-ramp.md).
bench-delta: venv
	$(CARGO) build --release -p tidemark-cli --bins
	$(CARGO) build --release -p tidemark-e2e --bin tidemark-bench-delta
	$(CARGO_TARGET_DIR)/release/tidemark-bench-delta

include infra/iac.mk
include infra/api.mk
include infra/catalog.mk
