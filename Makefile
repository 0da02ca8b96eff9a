.PHONY: setup test run train lint
# Set up everything on a fresh machine, then run the service (the main job).
run: setup
	bash scripts/run.sh
setup:
	bash scripts/setup.sh
# Lint, type-check and run the whole test suite (installs what is missing first).
test:
	bash scripts/test.sh
# Train the shared emotion + sentiment model (about 50 minutes on 2 CPU cores) into models/multitask.
train: setup
	HF_HUB_OFFLINE=1 OMP_WAIT_POLICY=PASSIVE .venv/bin/emotion-monitor train --config configs/multitask.yaml --out models/multitask --run-dir runs/multitask
lint: setup
	.venv/bin/ruff check . && .venv/bin/mypy serve_app deployments training tooling
