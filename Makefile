# The two commands of the README: `make demo` and `make test`. Both install first (into .venv).
VENV ?= .venv
PY := $(VENV)/bin/python
# The tiny offline models are built once and cached here (see synthset/testing.py).
export SYNTHSET_HOME ?= $(CURDIR)/.cache/synthset
# On a CPU-only machine `accelerate launch --cpu --num_processes 2` silently starts ONE process;
# these flags start two (synthset then forms a gloo group itself). On GPUs use your accelerate config.
DEMO_PROCESSES ?= 2
LAUNCH ?= $(VENV)/bin/accelerate launch --multi_gpu --num_processes $(DEMO_PROCESSES) --num_machines 1 \
	--mixed_precision no --dynamo_backend no

# The review page is tested in a real headless Chromium (Debian's `chromium`; .ci/run installs it).
CHROMIUM ?= /usr/bin/chromium

.PHONY: install demo test lint format bench smoke-full gpu-check gpu-bundle gpu-dry-run clean browser

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(VENV)/bin/pip install --quiet -e ".[dev]"
	touch $@

demo: install
	$(PY) -m synthset tiny-models
	$(PY) -m synthset plan recipes/demo.yaml
	$(LAUNCH) -m synthset generate runs/demo
	$(PY) -m synthset build runs/demo
	$(PY) -m synthset card runs/demo --license apache-2.0
	$(PY) -m synthset review runs/demo
	@echo "--- augmentation-conditioning (unCLIP), conditioned on the demo's naive images ---"
	$(PY) -m synthset plan recipes/demo-augcond.yaml
	$(LAUNCH) -m synthset generate runs/demo-augcond
	$(PY) -m synthset build runs/demo-augcond
	$(PY) -m synthset card runs/demo-augcond --license apache-2.0
	$(PY) -m synthset review runs/demo-augcond
	@echo "--- the demo dataset (paper A's ladder): card runs/demo/dataset/README.md, review runs/demo/review.html ---"
	@$(PY) -m synthset build runs/demo | tail -n 6

browser:
	@test -x $(CHROMIUM) || { echo "make test needs Debian's chromium at $(CHROMIUM) for the review page test:" \
		"apt-get install -y chromium (.ci/run does), or set CHROMIUM=/path/to/chromium" >&2; exit 1; }

test: install browser
	SYNTHSET_TEST_CHROMIUM=$(CHROMIUM) $(PY) -m pytest

lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: install
	$(PY) -m benchmarks.run

# Every full-size replica (SD 1.5, 2.1-base, 2.1 768-v, 2.1-unCLIP, SDXL: published configs, random weights)
# through plan -> generate -> build -> load_dataset, one image each at native size, 2 steps, fp32 on CPU.
# Each replica's peak RSS is checked against its bound (SDXL: 18.5 GiB); a stage that passes it is stopped and
# fails the smoke. Not part of `make test` (.ci/run runs it after): 20-45 min on 2 cores, ~20 GB of disk under
# $(SYNTHSET_HOME)/models. One replica: make smoke-full SMOKE="--only sdxl-base".
smoke-full: install
	nice -n 10 $(PY) -m benchmarks.smoke_full $(SMOKE)

# On a machine with CUDA: every replica at fp16, attention backends, knobs, batch 1-16 (< 8 min); one JSON.
gpu-check: install
	$(PY) -m benchmarks.gpu

# The GPU machine reaches no package index: the wheels the check needs that its image lacks (CPython 3.12),
# checked for closure against the image's package list, sized against the 64 MiB a device call carries.
# Needs PyPI. Then `bash benchmarks/gpu_run.sh` there, carrying benchmarks/gpu-bundle (benchmarks/README.md).
gpu-bundle: install
	$(PY) -m benchmarks.gpu_bundle build

# What benchmarks/gpu_run.sh does there, here, but the GPU part: install the bundle, import everything, plan.
gpu-dry-run: install
	PYTHON=$(PY) bash benchmarks/gpu_run.sh --dry-run

clean:
	rm -rf runs .cache .pytest_cache .ruff_cache
