# make demo: train configs/sample.yaml on the bundled data/sample corpus; training ends by
#            scoring the best model on the sample test set (nerwin eval does the same alone).
# make test: the whole test suite (plus ruff) in a virtual environment inside the repo.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/nerwin train configs/sample.yaml --out runs/sample --force

test: $(STAMP)
	$(BIN)/ruff check nerwin tests bench data
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check nerwin tests bench data

clean:
	rm -rf $(VENV) runs build *.egg-info .pytest_cache .ruff_cache

bench: $(STAMP)
	$(BIN)/python bench/speed.py
