# tcdesign: `make run` sets up and runs the main job; `make test` sets up and runs the tests.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
OUT    ?= runs/default

.PHONY: setup run test lint bench clean

$(BIN)/tcdesign: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned, so that nothing pulls a CUDA build
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]' torch==2.13.0
	@touch $@

setup: $(BIN)/tcdesign

# Main job: the whole pipeline on the bundled models (generate -> screen -> rank -> report),
# about 5 minutes on an idle 2-core CPU; a rerun resumes. Open $(OUT)/report.html.
run: setup
	$(BIN)/tcdesign run --out $(OUT)

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src tests benchmarks

bench: setup
	$(BIN)/pip install --quiet -e '.[dev,bench]' torch==2.13.0
	$(BIN)/python benchmarks/predictor.py

clean:
	rm -rf $(VENV) runs .pytest_cache
