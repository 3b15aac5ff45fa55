# Two commands for a fresh machine:  `make run`  and  `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
# torch + a torchvision built for it (ultralytics needs torchvision). On this workplace pip takes
# both from the local wheel folders; the build also runs on a CPU-only machine.
TORCH   ?= torch==2.14.1 torchvision==0.29.1
EXTRAS  ?= dev,hf
SHARED  := $(wildcard ../shared/data/labels.csv)
DATA    ?= $(if $(SHARED),../shared/data,runs/sample)
export HF_HUB_OFFLINE=1
export YOLO_OFFLINE=1
export YOLO_CONFIG_DIR=$(CURDIR)/.cache/ultralytics

.PHONY: install run test bench clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

install: $(BIN)/.installed

run: install
	@[ -f $(DATA)/labels.csv ] || $(BIN)/roadwork make-sample --out $(DATA)
	$(BIN)/roadwork eval --data $(DATA) --split dev --config configs/cpu.yaml --transform validator --out runs/demo

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: install
	$(BIN)/roadwork bench --config configs/cpu.yaml --out runs/bench-cpu.json

clean:
	rm -rf $(VENV) runs .cache
