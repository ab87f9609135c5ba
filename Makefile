.PHONY: help start test unit demo setup bench soak clean
.DEFAULT_GOAL := help

help:   ## list the targets (this)
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z]+):[^#]*## (.*)$$/  make \1\t\2/' | expand -t 16

start:  ## run the app on localhost:7071: Azurite, the fake Azure OpenAI if needed, func start or the development host
	bash scripts/start.sh

test:   ## lint, type-check, the deployment checks and the test suite (starts its own Azurite and fake)
	bash scripts/test.sh

unit:   ## only the tests that need no Azurite and start no process (pytest -m unit): seconds
	bash scripts/setup.sh && .venv/bin/python -m pytest -m unit -q -p no:xdist

demo:   ## push one prompt through the pipeline: through the running app, else in-process (Azurite, the fake or your endpoint)
	bash scripts/setup.sh && .venv/bin/python -m scripts.demo

bench:  ## run the benchmarks and write bench/RESULTS.md
	bash scripts/setup.sh && .venv/bin/python -m bench.run

SEED ?= 7
MINUTES ?= 20
INSTANCES ?= 3
soak:   ## the fault-injection harness, long (SEED=7 MINUTES=20 INSTANCES=3): bench/RESULTS-soak.md
	bash scripts/setup.sh && .venv/bin/python -m tests.harness.soak --seed $(SEED) --minutes $(MINUTES) --instances $(INSTANCES)

setup:  ## only install the Python environment and Azurite
	bash scripts/setup.sh

clean:  ## remove everything setup, start, demo, bench, test and the checks create; keeps local.settings.json
	rm -rf .venv .venv-checkov .venv-* .checks .tmp node_modules package-lock.json .azurite \
		.pytest_cache .mypy_cache .ruff_cache .python_packages bench/.tmp
	find . -path ./.git -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
