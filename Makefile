# webtext: the two set-up commands are `make demo` and `make test`; both build .venv on first use.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA ?= demo-data

.PHONY: install demo test lint format bench bench-scale clean airflow-venv airflow-test

install: $(STAMP)

# torch is installed first and pinned to the CPU build that pip finds on local disk;
# a plain `torch` requirement would otherwise pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/webtext demo --config configs/demo.toml --data-root $(DATA)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Airflow pins its own dependency set, so it gets its own venv (.airflow-venv; built once,
# a few minutes) for the DAG tests; see docs/airflow.md.
airflow-venv:
	scripts/airflow-test.sh install

airflow-test: $(STAMP) airflow-venv
	$(PY) -m pytest -q tests/test_dag.py

test: $(STAMP) lint airflow-venv
	$(PY) -m pytest -q

# The CPU benchmarks, one after another (tens of minutes on 2 cores); figures go to
# docs/benchmarks.md by hand. bench.train_gpu needs a GPU: see docs/training.md.
BENCHES := links_throughput fetch_throughput fetch_longtail extraction_quality build_throughput \
	extract_scaling \
	build_memory minhash_throughput dedup_quality tokenize_throughput bloom rescore_overhead \
	microweb airflow_dag

bench: $(STAMP)
	set -e; for b in $(BENCHES); do echo "== bench.$$b"; $(PY) -m bench.$$b; done

# Dedup, the final write and tokenize at 1M generated documents and the whole build from WARC
# at 100k pages, next to datatrove's MinHash (its own venv under bench-data/, built on first
# use). Hours on 2 cores; DOCS= and PAGES= for smaller runs. See docs/scale.md.
DOCS ?= 1000000
PAGES ?= 100000

bench-scale: $(STAMP)
	$(PY) -m bench.scale --docs $(DOCS) --pages $(PAGES)

clean:
	rm -rf $(DATA) bench-data .pytest_cache .ruff_cache
