# mysimbdp: the two commands a newcomer needs are `make demo` and `make test`.
# Everything else here is a step of those two, runnable on its own.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

STACK := e2e/stack/stack.sh
# The stack's env file (endpoints and admin credentials), written by `make stack-up`.
ENV_FILE = $(shell $(STACK) env)
# Two cores: bound the test threads so servers and builds are not starved.
TEST_THREADS ?= 2

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# Where the demo runs the tenants' apps: kubernetes (the chart's operator pod, Jobs and
# Deployments on the real node) or local (processes on this machine, the fast option).
RUNTIME ?= kubernetes

.PHONY: demo
demo: deps ## Run the whole platform on the local stack and print what it ingested (RUNTIME=local for local processes)
	RUNTIME=$(RUNTIME) e2e/demo.sh

.PHONY: test
test: deps lint unit stack-up integration ## Everything CI runs: lint, unit tests, the stack, integration and e2e tests

.PHONY: deps
deps: ## Install the system packages the build needs (apt) and check the toolchains
	@bash -c '. e2e/stack/lib.sh; . e2e/stack/deps.sh; ensure_deps'

.PHONY: lint
lint: ## rustfmt and clippy, warnings are errors
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

.PHONY: unit
unit: ## Tests that need no servers
	cargo test --workspace --locked --lib --bins
	cargo test --locked -p mysimbdp-api --tests

.PHONY: integration
integration: ## Tests against the running local stack (real Kubernetes, Kafka and coredms)
	cargo build --locked --workspace --bins
	e2e/stack/images.sh build
	source "$(ENV_FILE)" && cargo test --locked --workspace --tests --no-fail-fast -- --test-threads=$(TEST_THREADS)

.PHONY: images
images: ## Build the operator, sidecar and sample apps' images from target/debug into the real node's containerd (no registry)
	cargo build --locked --workspace --bins
	e2e/stack/images.sh build

.PHONY: bench-batch
bench-batch: ## Benchmark: batch ingestion rows/s and MB/s on the flights data set against the store's raw insert_many (local stack)
	cargo build --release --locked --workspace --bins --examples
	source "$(ENV_FILE)" && cargo bench --locked -p mysimbdp-operator --bench batch

.PHONY: bench-stream
bench-stream: ## Benchmark: stream msgs/s against the store's raw insert_many, app + sidecar memory, breach-to-action delay (local stack)
	cargo build --release --locked --workspace --bins --examples
	source "$(ENV_FILE)" && cargo bench --locked -p mysimbdp-operator --bench stream

.PHONY: bench-operator
bench-operator: ## Benchmark: operator CPU, reconciliations and memory idle, and time to every status, for 10-1,000 apps over 10 and 100 tenants (local stack)
	cargo build --release --locked --workspace --bins
	source "$(ENV_FILE)" && cargo bench --locked -p mysimbdp-operator --bench operator

.PHONY: crds
crds: ## Regenerate crds/ from the API types
	cargo run --quiet --locked -p mysimbdp-api --bin crdgen -- crds
	$(MAKE) --no-print-directory chart-crds

.PHONY: chart-crds
chart-crds: ## Copy crds/ into the Helm chart (its copies are never edited by hand)
	rm -f charts/mysimbdp/crds/*.yaml
	cp crds/*.yaml charts/mysimbdp/crds/

.PHONY: helm-lint
helm-lint: ## helm lint --strict the chart and check its CRDs equal crds/ (helm from the local stack)
	source "$(ENV_FILE)" && "$$MYSIMBDP_HELM" lint --strict charts/mysimbdp
	diff -r crds charts/mysimbdp/crds || { echo "the chart's CRDs differ from crds/; run make chart-crds" >&2; exit 1; }

.PHONY: stack-up
stack-up: ## Build (once) and start the local stack; idempotent
	$(STACK) up

.PHONY: stack-down
stack-down: ## Stop the local stack (state is kept)
	$(STACK) down

.PHONY: stack-wipe
stack-wipe: ## Stop the local stack and delete its state
	$(STACK) wipe

.PHONY: stack-status
stack-status: ## Show what runs in the local stack
	$(STACK) status
