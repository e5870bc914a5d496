# Set-up on a fresh machine: `make demo` or `make test` create the virtualenv and install everything first.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test test-matrix lint format benchmark clean

# torch is installed first, as TORCH_REQUIREMENT, so that the package's own `torch>=2.3` installs nothing more. On the
# project's machines pip takes a local CPU wheel of torch 2.13.0 for Python 3.11; from PyPI on Linux the same line
# installs the CUDA build (several GB). A CPU-only build from PyTorch's CPU index:
#   make install TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
TORCH_REQUIREMENT ?= torch==2.13.0
TORCH_INDEX_URL ?=
export TORCH_REQUIREMENT TORCH_INDEX_URL

$(STAMP): setup.cfg pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install "$(TORCH_REQUIREMENT)" $(if $(TORCH_INDEX_URL),--index-url "$(TORCH_INDEX_URL)")
	$(PYTHON) -m pip install -e ".[all,tests]"
	touch $(STAMP)

install: $(STAMP)

# The quick comparison study: every objective on CartPole-v1 and Pendulum-v1, 4-13 minutes on 2 cores (runs/compare/quick).
demo: install
	$(PYTHON) -m sb3_ppo_variants compare --preset quick

test: install
	$(PYTHON) -m pytest -n 2 tests

# The fast tests (-m "not slow") on every Python of setup.cfg's classifiers found on this machine (noxfile.py), each in
# its own virtualenv in .nox/, kept and reused by the next run. Not run by CI (.ci/run: make lint, make test).
# NOX_ARGS are passed to nox, e.g. make test-matrix NOX_ARGS="-s tests-3.12"
test-matrix: install
	$(PYTHON) -m nox $(NOX_ARGS)

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
