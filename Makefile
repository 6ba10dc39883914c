# Two commands: `make run` (the whole pipeline) and `make test` (the test suite).
# Each creates the virtual environment it needs on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test quick bench gallery clean

$(VENV)/.installed: requirements.txt requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements-test.txt
	touch $@

run: $(VENV)/.installed
	$(PY) main.py $(ARGS)

quick: $(VENV)/.installed
	$(PY) main.py --quick $(ARGS)

test: $(VENV)/.installed
	$(PY) -m pytest -q tests

bench: $(VENV)/.installed
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

# The README's gallery: committed copies under docs/, regenerated from a full default run.
GALLERY := mlp_3d.png mlp_contour.png plane_choice.png mlp_multi_seed.png sharpness.png hessian_spectrum.png \
           optimizer_comparison.png edge_of_stability.png mlp_descent.gif optimizer_race.gif
gallery: $(VENV)/.installed
	$(PY) main.py --output_dir=build/gallery $(ARGS)
	mkdir -p docs && for f in $(GALLERY); do cp build/gallery/$$f docs/$$f; done

clean:
	rm -rf figures build .cache .pytest_cache
