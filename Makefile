# edgeprune: `make setup` builds .venv (and installs the Debian packages when run as root),
# `make demo` runs the main job end to end, `make test` runs the test suite.
PY      ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
# Debian packages the project uses: data, the Cortex-M toolchain and emulator (C runtime, TFLM
# under QEMU; TFLM's Makefile runs python3 scripts needing numpy/PIL), the open FPGA flow (RTL
# export), and chromium (headless test of the HTML report).
APT_PKGS := dataset-fashion-mnist gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib \
            qemu-system-arm g++ python3-numpy python3-pil \
            yosys nextpnr-ice40 fpga-icestorm verilator iverilog chromium
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: setup apt venv demo test clean

setup: apt $(VENV)/.installed

apt:
	@if [ "$$(id -u)" = "0" ]; then \
	  missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi; \
	else \
	  for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || { echo "run as root: apt-get install -y $(APT_PKGS)"; break; }; done; \
	fi

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q torch==2.13.0
	$(VPY) -m pip install -q -r requirements.txt
	$(VPY) -m pip install -q --no-deps -e .
	touch $@

# The whole flow from one recipe (recipes/demo.toml); ends by printing where report.html is.
# A second `make demo` reuses the finished stages (--resume).
demo: setup
	$(VENV)/bin/edgeprune run recipes/demo.toml -o runs/demo $$([ -d runs/demo/.flow ] && echo --resume)

test: setup
	$(VPY) -m pytest -q tests

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
