# Set-up on a fresh machine: `make demo` or `make test` create the virtualenv and install everything first.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test lint format benchmark clean

$(STAMP): setup.cfg pyproject.toml
	python3 -m venv $(VENV)
	# CPU build of torch first: an unpinned torch (or one pulled in by a dependency) downloads several GB of CUDA packages.
	$(PYTHON) -m pip install torch==2.13.0
	$(PYTHON) -m pip install -e ".[all,tests]"
	touch $(STAMP)

install: $(STAMP)

# The quick comparison study: every objective on CartPole-v1 and Pendulum-v1, 4-13 minutes on 2 cores (runs/compare/quick).
demo: install
	$(PYTHON) -m sb3_ppo_variants compare --preset quick

test: install
	$(PYTHON) -m pytest -n 2 tests

lint: install
	$(PYTHON) -m ruff check .
	$(PYTHON) -m black --check .
	$(PYTHON) -m mypy sb3_ppo_variants

format: install
	$(PYTHON) -m ruff check --fix .
	$(PYTHON) -m black .

benchmark: install
	$(PYTHON) benchmarks/speed.py
	# each objective and SB3 PPO with rl-zoo's hyperparameters, 3 seeds (formerly benchmarks/learning.py)
	$(PYTHON) -m sb3_ppo_variants compare --preset learning --out benchmarks/results/learning

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
