.PHONY: start test unit demo setup bench soak clean

start:  ## set everything up and run the app locally (Azurite, fake Azure OpenAI if needed, func start)
	bash scripts/start.sh

test:   ## lint, type-check and run the test suite
	bash scripts/test.sh

unit:   ## only the tests that need no Azurite and start no process (pytest -m unit): seconds
	bash scripts/setup.sh && .venv/bin/python -m pytest -m unit -q -p no:xdist

demo:   ## push one prompt through the pipeline: Azurite, and the fake or the endpoint in the environment / local.settings.json
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
	rm -rf .venv .venv-checkov .venv-worker .venv-* .checks node_modules package-lock.json .azurite \
		.pytest_cache .mypy_cache .ruff_cache .python_packages bench/.tmp
	find . -path ./.git -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
