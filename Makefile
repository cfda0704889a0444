# Two commands set up a fresh machine: `make demo` and `make test`.
# Each (re)creates .venv when it is missing or older than pyproject.toml.
PYTHON ?= python3
# Override for other platforms, e.g. TORCH_SPEC="torch==2.9.1 torchvision==0.24.1" on aarch64.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-cache-dir --upgrade pip
	# torch first, pinned to the releases these machines hold on disk (a CUDA build that runs on the CPU;
	# about 5.5 GB in the venv: no second copy in pip's cache)
	$(BIN)/python -m pip install --quiet --no-cache-dir $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet --no-cache-dir -e ".[full,cluster,executorch,litert,litert-export,dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/dait-edge demo

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

lint: $(STAMP)
	$(BIN)/ruff check dait_edge tests tools

clean:
	rm -rf $(VENV) runs .pytest_cache
