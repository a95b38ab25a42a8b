# arqfleet developer commands. `make help` lists them.
SHELL := /bin/bash
VENV := .venv/bin
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: help setup demo test lint unit e2e node-test crd chart-files kube-schemas monitoring cluster-up cluster-down images e2e-kind bench bench-sim bench-validate bench-scale soak

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

setup: ## install Debian packages, the venv and the control-plane binaries (idempotent)
	@hack/setup

demo: setup ## the main job: cluster + real node, our worker image, redis, operator, jobs, autoscaling, drain on delete
	@hack/demo

test: setup lint ## the whole suite: lint, unit, integration (real redis + apiserver), e2e
	$(VENV)/pytest -p no:cacheprovider tests

lint: ## ruff, mypy --strict, import-linter, hadolint
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy
	$(VENV)/lint-imports
	$(VENV)/hadolint Dockerfile.operator Dockerfile.worker examples/Dockerfile bench/Dockerfile

unit: ## pure tests only (no servers)
	$(VENV)/pytest tests/unit

node-test: setup ## the real node tier: kubelet + containerd + runc + CNI running pods (root)
	$(VENV)/pytest -p no:cacheprovider tests/integration/node

e2e: setup ## the end-to-end tier: operator + a real node (kubelet + containerd) running our worker image
	$(VENV)/pytest tests/e2e

crd: chart-files ## regenerate crds/ (and the chart's copies) from the pydantic models

kube-schemas: ## re-extract the core/v1 schemas the CRD embeds, from the pinned k8s.io/kubernetes
	$(VENV)/python hack/core_v1_schemas.py

chart-files: ## regenerate what the chart and deploy/ copy from Python: CRD, RBAC rules, bundle
	$(VENV)/arqfleet crd --output crds/
	$(VENV)/arqfleet crd --output charts/arqfleet/files/crds/
	$(VENV)/arqfleet rbac --rules-only > charts/arqfleet/files/rbac-rules.yaml
	hack/render-bundle

monitoring: ## regenerate the Grafana dashboard JSON and the chart's copy of the alert rules
	cp deploy/prometheus-rules.yaml charts/arqfleet/files/prometheus-rules.yaml
	$(VENV)/python hack/grafana_dashboard.py

images: setup ## build the operator, worker and example images with podman (cached by content)
	@hack/build-images

bench: setup ## the benchmarks (bench/README.md): simulator, worker throughput, probe cost, reaction time
	$(VENV)/python -m bench.sim --plots bench/results
	$(VENV)/python bench/worker_throughput.py
	$(VENV)/python bench/probe_cost.py
	$(VENV)/python bench/reaction_time.py

bench-validate: setup ## replay a short trace on the local cluster and compare with the simulator
	$(VENV)/python bench/sim_validate.py

bench-sim: setup ## replay the traces through arqfleet, KEDA + HPA and HPA on our signal (seconds)
	$(VENV)/python -m bench.sim --plots bench/results

bench-scale: setup ## the operator at 1,000 JobQueues, beside 100: CPU, RSS, loop lag, API requests (~15 min)
	$(VENV)/python bench/operator_scale.py

soak: setup ## 30 min of random load and faults with job accounting (SOAK_MINUTES=5 for less)
	$(VENV)/python hack/soak.py

e2e-kind: ## machines with Docker only (not CI): images, a kind cluster, the chart, a burst
	@hack/e2e-kind

cluster-up: setup ## start etcd + kube-apiserver + kube-controller-manager on loopback, and a real node
	@hack/cluster up

cluster-down: ## stop the local cluster
	@hack/cluster down
