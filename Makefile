# Leadback: `make demo` runs the app on embedded defaults, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha256sum requirements.lock | cut -c1-16)

.PHONY: install lint test demo lock clean screenshots

$(STAMP): requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q --require-hashes -r requirements.lock
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

# The type checker loads the settings, which take the embedded key only in DEBUG.
lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	DEBUG=true $(BIN)/mypy config feedback sources reporting monitoring
	$(BIN)/lint-imports --no-cache

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

# Walk the pages in headless Chromium at 1366 and 390 px and keep what it saw
# in var/screenshots/ for a reviewer to look at.
screenshots: install
	$(BIN)/pytest -q -m browser -p no:cacheprovider $$(grep -l "screenshots" tests/e2e/*_browser.py)
	@echo "Screenshots: $$(ls var/screenshots | wc -l) files in var/screenshots/"

# The demo serves on 127.0.0.1:$(LEADBACK_DEMO_PORT) (default 8000).
LEADBACK_DEMO_PORT ?= 8000
LEADBACK_DEMO_LEADS ?= 5000
export LEADBACK_DEMO_PORT

# The demo signs sessions and reset links with a key of its own, made on its first
# run and kept beside its database (the settings refuse the embedded key outside DEBUG).
DEMO_VAR_DIR := $(or $(LEADBACK_VAR_DIR),var)
DEMO_KEY_FILE := $(DEMO_VAR_DIR)/demo-secret-key
DEMO_KEY = SECRET_KEY="$$(cat $(DEMO_KEY_FILE))"

$(DEMO_KEY_FILE):
	mkdir -p $(@D)
	umask 077 && $(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))' > $@

demo: install $(DEMO_KEY_FILE)
	$(DEMO_KEY) $(BIN)/python manage.py migrate --noinput
	$(DEMO_KEY) LEADBACK_OUTBOUND_ALLOWLIST=127.0.0.1/32 \
		$(BIN)/python manage.py seed_demo --leads $(LEADBACK_DEMO_LEADS) \
		--base-url http://127.0.0.1:$(LEADBACK_DEMO_PORT)
	$(DEMO_KEY) $(BIN)/python manage.py seed_demo_digests
	$(DEMO_KEY) $(BIN)/python manage.py seed_demo_monitors
	$(DEMO_KEY) DEBUG=true LEADBACK_OUTBOUND_ALLOWLIST=127.0.0.1/32 \
		LEADBACK_DEMO_RECEIVER=true $(BIN)/honcho -f Procfile.demo start

lock:
	$(BIN)/uv pip compile -q pyproject.toml --extra dev --python-version 3.11 \
		--generate-hashes -o requirements.lock

clean:
	rm -rf $(VENV) var
