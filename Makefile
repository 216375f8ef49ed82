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

# The review page is tested in a real headless Chromium (Debian's `chromium`; `make test` installs it as root).
CHROMIUM ?= /usr/bin/chromium

.PHONY: install demo test lint docs format bench smoke-full gpu-check gpu-bundle gpu-dry-run clean system-packages

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(VENV)/bin/pip install --quiet -e ".[dev]"
	touch $@

# The demo prints what each stage did (about 60 lines); `make demo SYNTHSET="-m synthset --verbose"` shows the
# libraries' bars and every rank's log lines too. A second `synthset build` keeps the card when the data is unchanged.
SYNTHSET ?= -m synthset
demo: install
	@$(PY) $(SYNTHSET) tiny-models > /dev/null
	@echo "$$ synthset plan, accelerate launch ... generate, build, card, review: recipes/demo.yaml on tiny offline models"
	@$(PY) $(SYNTHSET) plan recipes/demo.yaml
	@$(LAUNCH) $(SYNTHSET) generate runs/demo
	@$(PY) $(SYNTHSET) build runs/demo
	@$(PY) $(SYNTHSET) card runs/demo --license apache-2.0
	@$(PY) $(SYNTHSET) review runs/demo
	@echo "--- augmentation-conditioning (unCLIP), conditioned on the demo's naive images ---"
	@$(PY) $(SYNTHSET) plan recipes/demo-augcond.yaml
	@$(LAUNCH) $(SYNTHSET) generate runs/demo-augcond
	@$(PY) $(SYNTHSET) build runs/demo-augcond
	@$(PY) $(SYNTHSET) card runs/demo-augcond --license apache-2.0
	@$(PY) $(SYNTHSET) review runs/demo-augcond
	@echo "--- done. The tiny models have random weights: every image is noise, by design (a real model makes real ones)"
	@echo "card:    runs/demo/dataset/README.md   (samples.jpg and clip_scores.png beside it)"
	@echo "review:  runs/demo/review.html         (every class's images and the quality gate's rejects)"
	@echo "dataset: runs/demo/dataset             (augmentation-conditioning: runs/demo-augcond/dataset)"
	@echo "load it: datasets.load_dataset(\"runs/demo/dataset\", \"lar_cd_sd\", split=\"train\")"
	@echo "yours:   synthset new --classes my_classes.txt   (a class per line; see the README)"

# `make test` needs Chromium for the page tests and a one-node SLURM (slurm-wlm, munge) for `synthset submit`'s:
# installed here with apt-get when running as root (as .ci/run does); elsewhere it stops with the one command to run.
SYSTEM_PACKAGES := chromium slurm-wlm munge
system-packages:
	@{ test -x $(CHROMIUM) && command -v slurmctld >/dev/null; } || [ "$$(id -u)" != 0 ] || \
		{ echo "installing Debian's $(SYSTEM_PACKAGES) for the page and SLURM tests" >&2; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null; }
	@{ test -x $(CHROMIUM) && command -v slurmctld >/dev/null; } || { echo "make test needs Chromium at" \
		"$(CHROMIUM) and SLURM (slurmctld) for its page and cluster tests; run:" \
		"sudo apt-get install -y $(SYSTEM_PACKAGES)   (or set CHROMIUM=/path/to/chromium)" >&2; exit 1; }

# Two pytest-xdist workers, a test file each at a time (module fixtures such as the SLURM cluster stay in one
# worker): 11 min for the suite on 2 cores, 20 min one test at a time. `make test TEST_WORKERS=0`: serial.
TEST_WORKERS ?= 2
test: install system-packages
	SYNTHSET_TEST_CHROMIUM=$(CHROMIUM) $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

# The documentation site, into site/ (ignored); the recipe, CLI and Python references are generated from the
# code while it builds (tools/mkdocs_hooks.py, mkdocstrings). --strict: a broken link or a warning fails.
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: install
	$(PY) -m benchmarks.run

# Every full-size replica (SD 1.5, 2.1-base, 2.1 768-v, 2.1-unCLIP, SDXL: published configs, random weights)
# through plan -> generate -> build -> load_dataset, one image each at native size, 2 steps, fp32 on CPU.
# Each replica's peak RSS is checked against its bound (SDXL: 19 GiB); a stage that passes it is stopped and
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
