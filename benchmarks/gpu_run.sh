#!/usr/bin/env bash
# The GPU check in one device call (benchmarks/README.md, "The GPU check on the GPU machine").
#
#   bash benchmarks/gpu_run.sh             on the GPU machine (carry benchmarks/gpu-bundle, built by make gpu-bundle)
#   bash benchmarks/gpu_run.sh --dry-run   here: everything but the GPU part
#
# 1. installs the bundle's wheels with pip --no-index --no-deps into a temp target, first on PYTHONPATH
#    (the dry run: this machine's builds of the cp312-only ones, after checking that pip takes the real
#    ones for CPython 3.12);
# 2. preflight: every bundled wheel's requirements hold for what is installed (benchmarks.gpu_bundle); an
#    xformers that cannot import is removed (diffusers would import it for every row);
# 3. imports every module the check imports and every class the replicas name (benchmarks.gpu_imports; the
#    dry run also fails on any that came from this machine's site-packages but the GPU image lacks);
# 4. the dry run prints the plan of rows; the real run measures them (`python -m benchmarks.gpu`: the
#    replicas are assembled in GPU memory from their configs, nothing downloaded) with a time budget, and a
#    hard stop that ends the command well inside the call's 10 minutes. JSON and log go to $OUT.
# Extra arguments go to benchmarks.gpu (e.g. --only sd15,sdxl-base --no-compile).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
dry=false
if [[ ${1:-} == --dry-run ]]; then dry=true; shift; fi
PYTHON=${PYTHON:-python3}
BUNDLE=${GPU_BUNDLE:-benchmarks/gpu-bundle}
HOST_BUNDLE=${GPU_BUNDLE_HOST:-benchmarks/gpu-bundle-host}
BUDGET=${GPU_BUDGET_SECONDS:-420} # no row starts after this (benchmarks.gpu --budget-seconds)
HARD=${GPU_HARD_SECONDS:-540}     # the whole command stops here: a device call may run 600 s
OUT=${OUT:-benchmarks/results}
if ! compgen -G "$BUNDLE/*.whl" >/dev/null; then
  echo "gpu_run: no wheels in $BUNDLE: run 'make gpu-bundle' where the call starts, and carry $BUNDLE" >&2
  exit 2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
site=$work/site
pip_install=("$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --disable-pip-version-check)
if $dry; then
  "${pip_install[@]}" --target "$work/cp312" --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 "$BUNDLE"/*.whl
  echo "gpu_run: pip installs the $(ls "$BUNDLE"/*.whl | wc -l) wheels of $BUNDLE for CPython 3.12 (the GPU machine)"
  mapfile -t wheels < <(PYTHONPATH=$PWD "$PYTHON" -m benchmarks.gpu_bundle dry-run-wheels --bundle "$BUNDLE" --host "$HOST_BUNDLE")
else
  wheels=("$BUNDLE"/*.whl)
fi
"${pip_install[@]}" --target "$site" "${wheels[@]}"
echo "gpu_run: installed ${#wheels[@]} wheels into $site ($((SECONDS - started)) s)"
# Nothing there reaches the Hub: say so, rather than letting a library wait on a network timeout.
export PYTHONPATH="$site:$PWD" PYTHONUNBUFFERED=1 SYNTHSET_HOME="$work/home" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
  HF_HUB_DISABLE_TELEMETRY=1 TMPDIR="$work"
"$PYTHON" -m benchmarks.gpu_bundle preflight --bundle "$BUNDLE"
# diffusers imports xformers whenever it is installed: one that cannot import would stop every row, so it goes,
# and its rows say that xformers is not installed.
if [[ -d $site/xformers ]] && ! "$PYTHON" -c "import xformers.ops" >"$work/xformers.log" 2>&1; then
  echo "gpu_run: xformers does not import here ($(tail -n 1 "$work/xformers.log")); removed, its rows are skipped"
  rm -rf "$site"/xformers "$site"/xformers-*.dist-info
fi
if $dry; then
  "$PYTHON" -m benchmarks.gpu_imports --site "$site" --origins
  "$PYTHON" -m benchmarks.gpu --plan --budget-seconds "$BUDGET" "$@"
  echo "gpu_run: dry run done in $((SECONDS - started)) s; on the GPU the check would stop at $HARD s"
  exit 0
fi
"$PYTHON" -m benchmarks.gpu_imports --site "$site"
command -v nvidia-smi >/dev/null && nvidia-smi -L
mkdir -p "$OUT"
left=$((HARD - (SECONDS - started)))
echo "gpu_run: setup took $((SECONDS - started)) s; measuring with a ${BUDGET} s budget, stopped at ${left} s"
set +e
timeout --kill-after 15 "$left" "$PYTHON" -m benchmarks.gpu --budget-seconds "$BUDGET" --out "$OUT/gpu-check.json" \
  "$@" 2>&1 | tee "$OUT/gpu-check.log"
status=${PIPESTATUS[0]}
set -e
if [[ $status == 124 || $status == 137 ]]; then
  echo "gpu_run: stopped at the hard limit; $OUT/gpu-check.json has the rows measured until then (\"finished\": false)"
fi
echo "gpu_run: done in $((SECONDS - started)) s (exit $status)"
exit "$status"
