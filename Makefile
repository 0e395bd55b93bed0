# The two commands of the README. Both create .venv on a fresh machine.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: test fuzz demo lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check torch==2.14.1 torchvision==0.29.1 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -m pip install -q --disable-pip-version-check -e '.[all,test]' 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -c "import torch, torchvision, squeezenet"
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest -q -ra

# The long fuzz suite: hundreds of generated inputs per reader, 10 SIGKILLed training runs (the short one is in `test`).
fuzz: $(STAMP)
	SQUEEZENET_FUZZ=long $(PY) -m pytest -q -ra tests/fuzz tests/test_untrusted.py tests/test_crash_resume.py

demo: $(STAMP)
	$(PY) examples/demo.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
