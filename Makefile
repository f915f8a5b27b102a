# The two entry points of the README's Quick start are `make demo` and `make test`; both set up
# everything they need (a .venv with pinned packages, and the Debian packages grading relies on).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
READY  := $(VENV)/.installed
DEBIAN_PACKAGES := bubblewrap chromium chromium-driver
DEMO   := build/demo
COURSE ?= .
PORT   ?= 8888

.PHONY: help demo test test-fast release system-packages formgrader calibrate bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s "$$(printf '\t')"

$(READY): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==25.3
	$(PY) -m pip install --quiet -c requirements.lock -e '.[test,cluster]'
	touch $@

system-packages:  ## install the Debian packages the sandbox and report tests need (as root)
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing Debian packages:$$missing (run: sudo apt-get install$$missing)" >&2; exit 1; \
	  fi; \
	fi

demo: $(READY) system-packages  ## build the release and grade the bundled demo submissions end to end
	$(PY) -m autograder demo --dir $(DEMO)

test: $(READY) system-packages  ## run the whole test suite, slow tests included
	$(PY) -m pytest

test-fast: $(READY)  ## the quick tests only
	$(PY) -m pytest -m "not slow"

release: $(READY)  ## regenerate release/ from source/, and the demo download made from it (commit both)
	$(PY) -m autograder release
	$(PY) -m autograder demo --rebuild-zip

# The formgrader reads nbgrader_config.py from the folder Jupyter starts in, so it starts in COURSE.
formgrader: $(READY)  ## hand-grade in nbgrader's formgrader: Jupyter Lab in COURSE (default: the repository root)
	@test -f "$(COURSE)/nbgrader_config.py" || { echo "make formgrader: $(COURSE) is not a course root:" \
	  "it has no nbgrader_config.py (after \`make demo\`, run: make formgrader COURSE=$(DEMO))" >&2; exit 1; }
	@$(PY) -c 'import socket, sys; s = socket.socket(); s.bind(("", int(sys.argv[1])))' $(PORT) 2>/dev/null || { \
	  echo "make formgrader: port $(PORT) is in use (another Jupyter?): pick another, e.g. make formgrader PORT=$$(($(PORT) + 1))" >&2; exit 1; }
	@course="$$(cd "$(COURSE)" && pwd)"; token="$$($(PY) -c 'import secrets; print(secrets.token_hex(24))')"; \
	echo "formgrader for the course in $$course"; \
	echo "point your browser at http://localhost:$(PORT)/formgrader?token=$$token (Ctrl-C twice stops it)"; \
	cd "$$course" && JUPYTER_TOKEN="$$token" PATH="$(CURDIR)/$(VENV)/bin:$$PATH" \
	  exec "$(CURDIR)/$(VENV)/bin/jupyter" lab --no-browser --ServerApp.root_dir="$$course" \
	  --ServerApp.port=$(PORT) --ServerApp.port_retries=0 $(if $(filter 0,$(shell id -u)),--allow-root)

calibrate: $(READY)  ## check the timing limits on this machine (reference vs 3x-slow variants)
	$(PY) -m autograder calibrate

bench: $(READY) system-packages  ## print the grading throughput, grading cost and timing-noise figures (slow)
	$(PY) bench/grading_throughput.py
	$(PY) bench/grading_cost.py
	$(PY) bench/timing_noise.py

clean:  ## remove the venv and all grading state of the demo
	rm -rf $(VENV) build
