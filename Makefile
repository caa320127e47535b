# FaceGate developer and install tasks. `make` alone prints this help.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BUILD_VENV := .build-venv
BUILD_PY := $(BUILD_VENV)/bin/python
# Faces used to calibrate the int8 models. The default is the test photos of the face_recognition
# 1.3.0 sdist (fetched by pip into .cache/); point it at LFW or your own faces for better ranges.
CALIB_DIR ?=
# Calibration faces for the embedder only (the committed int8 embedder used ../shared/data/lfw).
EMBEDDER_CALIB_DIR ?=

.PHONY: help dev test demo lint format models bench bench-peers install-service uninstall-service clean check

help:  ## show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

dev: $(VENV)/.installed  ## create .venv with FaceGate and the dev tools

test: $(VENV)/.installed  ## run the test suite
	$(PY) -m pytest -q

lint: $(VENV)/.installed  ## ruff lint and format check
	$(VENV)/bin/ruff check appliance tests bench
	$(VENV)/bin/ruff format --check appliance tests bench

format: $(VENV)/.installed  ## apply ruff format and fixes
	$(VENV)/bin/ruff check --fix appliance tests bench
	$(VENV)/bin/ruff format appliance tests bench

check: lint test  ## lint, then test

demo: $(VENV)/.installed  ## enrol a person from packaged photos, replay a walk-up clip, print decisions
	$(PY) -m appliance demo

$(BUILD_VENV)/.installed: models/build/requirements.txt
	$(PYTHON) -m venv $(BUILD_VENV)
	$(BUILD_PY) -m pip install --quiet --upgrade pip
	$(BUILD_PY) -m pip install --quiet -r models/build/requirements.txt
	touch $@

models: $(BUILD_VENV)/.installed  ## rebuild every file in models/ from pinned pip packages (TensorFlow, build venv only)
	$(BUILD_PY) -m models.build.all $(if $(CALIB_DIR),--calib-dir $(CALIB_DIR)) \
		$(if $(EMBEDDER_CALIB_DIR),--embedder-calib-dir $(EMBEDDER_CALIB_DIR))

.PHONY: learn
# LFW with pairs.txt, for `make learn` (the embeddings are computed once and cached under .cache/learning/).
LFW_DIR ?= ../shared/data/lfw

learn: $(VENV)/.installed  ## compare similarity-learning heads with raw cosine on LFW and the door benchmark (out/learn.json)
	nice -n 10 $(PY) -m models.build.learning --root $(LFW_DIR) --json out/learn.json

bench: $(VENV)/.installed  ## print latency, fps, memory and start-up figures
	$(PY) -m appliance bench

bench-peers: $(VENV)/.installed  ## compare with face_recognition and the mtcnn package (separate venv)
	$(PYTHON) -m venv .peers-venv
	.peers-venv/bin/pip install --quiet -r bench/peers-requirements.txt
	.peers-venv/bin/pip install --quiet --no-deps face_recognition==1.3.0
	.peers-venv/bin/python bench/peers.py

install-service:  ## install and start the systemd service (Raspberry Pi OS, as root)
	sudo ./systemd/install.sh

uninstall-service:  ## stop and remove the systemd service (keeps the gallery and config)
	sudo ./systemd/uninstall.sh

clean:  ## remove venvs and caches
	rm -rf $(VENV) $(BUILD_VENV) .peers-venv .pytest_cache .ruff_cache
