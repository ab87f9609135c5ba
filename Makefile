.PHONY: start test demo setup bench clean

start:  ## set everything up and run the app locally (Azurite, fake Azure OpenAI if needed, func start)
	bash scripts/start.sh

test:   ## lint, type-check and run the test suite
	bash scripts/test.sh

demo:   ## push one prompt through both functions against Azurite and the fake (or a real endpoint)
	bash scripts/setup.sh && .venv/bin/python -m scripts.demo

bench:  ## run the benchmarks and write bench/RESULTS.md
	bash scripts/setup.sh && .venv/bin/python -m bench.run

setup:  ## only install the Python environment and Azurite
	bash scripts/setup.sh

clean:
	rm -rf .venv node_modules .azurite .pytest_cache .mypy_cache .ruff_cache
