# Two commands do all the set-up:  `make train`  and  `make test`.
# They create .venv (if missing) and install the project into it.
# CPU machines get the CPU build of torch; a GPU user who installed their own torch
# into .venv first keeps it (we only install torch when `import torch` fails).
PY ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.clap_train_installed

.PHONY: install train test format clean-data

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev,slurm,deepspeed]"
	touch $(STAMP)

# Extra Hydra overrides: make train ARGS="optim.lr=1e-3 trainer.max_epochs=2"
train: install
	$(BIN)/python train.py $(ARGS)

# lint and format check first (seconds), then the suite; `make format` applies ruff's fixes
test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q --durations=15 $(ARGS)

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean-data:
	rm -rf data/synthetic
