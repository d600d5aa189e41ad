# Everything a fresh Debian/Ubuntu machine needs comes from here: the venv, the packages, Mosquitto.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: test lint check demo bench mosquitto chromium systemd-tools install uninstall clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
	  echo "installing python3-venv"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq python3-venv >/dev/null; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

mosquitto:
	@command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || { \
	  echo "installing mosquitto"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq mosquitto mosquitto-clients >/dev/null; }

# Headless Chromium and its WebDriver, for the HMI's end-to-end tests (Debian packages; no
# browser download at test time: the booth PC and CI may have no internet).
chromium:
	@{ [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; } || { \
	  echo "installing chromium and chromium-driver"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver >/dev/null; }

# systemd-analyze, for the unit's checks in the suite (a minimal container may lack it).
systemd-tools:
	@command -v systemd-analyze >/dev/null 2>&1 || { \
	  echo "installing systemd (for systemd-analyze)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq systemd >/dev/null; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# Two workers, one test file each at a time: a file's booth, broker and browser stay in one worker.
test: $(STAMP) mosquitto chromium systemd-tools lint
	$(BIN)/pytest -q -n 2 --dist loadfile

demo: $(STAMP) mosquitto
	$(BIN)/python -m devkit.demo

bench: $(STAMP) mosquitto chromium
	$(BIN)/python bench/run_all.py

# The service on this machine: user, /opt/booth/venv, /etc/booth, the unit (docs/operations.md).
install:
	$(SUDO) env PYTHON=$(PYTHON) sh systemd/install.sh

# Keeps the records, the config and the user; PURGE=1 removes them too.
uninstall:
	$(SUDO) sh systemd/uninstall.sh $(if $(PURGE),--purge)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
