# Leadback: `make demo` runs the app on embedded defaults, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha256sum requirements.lock | cut -c1-16)

.PHONY: install lint test demo lock clean

$(STAMP): requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q --require-hashes -r requirements.lock
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy config feedback sources reporting
	$(BIN)/lint-imports --no-cache

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

# The demo serves on 127.0.0.1:$(LEADBACK_DEMO_PORT) (default 8000).
LEADBACK_DEMO_PORT ?= 8000
LEADBACK_DEMO_LEADS ?= 5000
export LEADBACK_DEMO_PORT

demo: install
	$(BIN)/python manage.py migrate --noinput
	LEADBACK_OUTBOUND_ALLOWLIST=127.0.0.1/32 \
		$(BIN)/python manage.py seed_demo --leads $(LEADBACK_DEMO_LEADS) \
		--base-url http://127.0.0.1:$(LEADBACK_DEMO_PORT)
	DEBUG=true LEADBACK_OUTBOUND_ALLOWLIST=127.0.0.1/32 LEADBACK_DEMO_RECEIVER=true \
		$(BIN)/honcho -f Procfile.demo start

lock:
	$(BIN)/uv pip compile -q pyproject.toml --extra dev --python-version 3.11 \
		--generate-hashes -o requirements.lock

clean:
	rm -rf $(VENV) var
