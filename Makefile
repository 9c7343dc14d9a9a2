# make demo: train configs/sample.yaml on the bundled data/ corpus and print test scores.
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
	$(BIN)/nerwin eval runs/sample/best data/sample/test.txt

test: $(STAMP)
	$(BIN)/ruff check nerwin tests bench data
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check nerwin tests bench data

clean:
	rm -rf $(VENV) runs build *.egg-info .pytest_cache .ruff_cache
