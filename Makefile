# pytest-xdist workers: the integration tests mostly wait on servers, so more workers than cores pay off
TEST_WORKERS ?= 4

.PHONY: install test test-compat test-fast unit lint schema demo bench bench-smoke bench-local bench-cluster golden clean
VENV := .venv
BIN := $(VENV)/bin

install: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml constraints.txt scripts/bootstrap.sh
	scripts/bootstrap.sh

test: lint
	$(BIN)/pytest -n $(TEST_WORKERS) -m "not bench and not matrix" --durations=25

# the compatibility matrix: the lowest Airflow release we claim, one in between and the newest, each in a
# fresh venv (tests/test_compat.py; `make test` runs the lowest and its own venv's)
test-compat: install
	$(BIN)/pytest -n 3 tests/test_compat.py --durations=5

# the benchmarks' own checks, at smoke size (tests/benchmarks)
bench-smoke: install
	$(BIN)/pytest -n 2 tests/benchmarks

# the inner loop: everything that starts no server, kernel or Airflow process (CI runs `make test`)
test-fast: install
	$(BIN)/pytest -n $(TEST_WORKERS) -m "not integration" --durations=10

unit: test-fast

lint: install
	$(BIN)/ruff check --no-cache dag_factory tests scripts benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

schema: install
	$(BIN)/dag-factory schema --output schemas

golden: install
	REGENERATE_GOLDEN=1 $(BIN)/pytest tests/cases tests/validate tests/scaffold tests/review tests/local/test_failures.py tests/cli/test_help.py -q

demo: install
	$(BIN)/dag-factory demo

bench: install
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/cluster.py

bench-cluster: install
	$(BIN)/python benchmarks/cluster.py

bench-local: install
	$(BIN)/python benchmarks/local_run.py

# stop the Execution API the demo's runs left up (it says so when none runs), then remove everything
clean:
	-[ -x $(BIN)/dag-factory ] && $(BIN)/dag-factory stop-server
	rm -rf $(VENV) .dag-factory
