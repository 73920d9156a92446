# The two set-up commands of the README: `make demo` and `make test`.
SHELL := /bin/bash
VENV_BIN := .venv/bin

.PHONY: setup demo test test-unit lint lock infra-up infra-down chromium

setup:
	@scripts/setup-venv

infra-up: setup
	$(VENV_BIN)/wastex infra up

infra-down: setup
	$(VENV_BIN)/wastex infra down

# The main job: the whole system on this machine until Ctrl-C (`make demo DEMO_ARGS="--dataset DIR"`).
demo: infra-up
	$(VENV_BIN)/wastex demo $(DEMO_ARGS)

# Debian's chromium for the browser tests (Playwright drives it; no browser is downloaded). Idempotent.
chromium:
	@scripts/install-chromium

# Installs what is missing, brings the infrastructure up, runs every test. On CI the services
# are stopped afterwards so no process outlives the run.
test: infra-up chromium
	@status=0; $(VENV_BIN)/pytest $(PYTEST_ARGS) || status=$$?; \
	if [[ "$${CI:-}" == "true" ]]; then $(VENV_BIN)/wastex infra down; fi; exit $$status

test-unit: setup
	$(VENV_BIN)/pytest -m unit $(PYTEST_ARGS)

lint: setup
	$(VENV_BIN)/ruff check .

# Re-resolve requirements.lock after changing dependencies in pyproject.toml.
lock: setup
	$(VENV_BIN)/uv pip compile -q pyproject.toml --extra dev -o requirements.lock
