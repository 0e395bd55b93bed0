# The two commands of the README. Both create .venv on a fresh machine.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: test fuzz demo lint clean browser

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check torch==2.14.1 torchvision==0.29.1 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -m pip install -q --disable-pip-version-check -e '.[all,test]' 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -c "import torch, torchvision, squeezenet; assert (torch.__version__.split('+')[0], torchvision.__version__.split('+')[0]) == ('2.14.1', '0.29.1'), 'pip replaced the pinned torch/torchvision: ' + torch.__version__"
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: lint browser
	$(PY) -m pytest -q -ra

# The serve tests drive Debian's chromium through the page (Selenium, no browser download).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
		echo "installing Debian's chromium and chromium-driver for the page test (apt-get)"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver \
			>/dev/null; }

# The long fuzz suite: hundreds of generated inputs per reader, 10 SIGKILLed training runs (the short one is in `test`).
fuzz: $(STAMP)
	SQUEEZENET_FUZZ=long $(PY) -m pytest -q -ra tests/fuzz tests/test_untrusted.py tests/test_crash_resume.py

demo: $(STAMP)
	$(PY) examples/demo.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
