"""The memory formula against the CPU measurements: `python -m benchmarks.memory_check RESULTS.json ...`.

Reads `benchmarks/replica_memory.py` results (any dtypes) and prints, per model and batch size, the
measured peak above the imports (RSS after loading minus RSS after the imports, plus the larger phase
peak) beside what `synthset.generation.memory.estimate` says for the same setting without the GPU context
term. The bfloat16 rows are what the formula's figures were fitted to (so their error is the fit's
residual); two rows check the formula's scaling rules on measurements it was not fitted to:
- float32 rows: activations and weights scaled from 2 to 4 bytes;
- SD 2.1 at 768 px predicted from SD 2.1-base's figures (same architecture, measured at 512 px) scaled
  by pixels (x 2.25).
It also prints the fitted figures (per image and fixed, per phase) in the form memory.py holds them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.replica_memory import fit_per_image

GIB = 1024**3


def measured_peak(report: dict[str, Any], batch: str) -> float:
    figures = report["batches"][batch]
    phases = max(figures["unet_phase_peak_above_loaded"], figures["vae_phase_peak_above_loaded"])
    return report["rss_loaded"] - report["rss_after_imports"] + phases


def predicted(hub_id: str, figures_of: str, batch: int, size: int, dtype: str) -> float:
    from synthset.generation.memory import KNOWN_MODELS, estimate
    from synthset.recipe import GeneratorSpec

    spec = GeneratorSpec(model=hub_id, batch_size=batch, width=size, height=size)
    found = estimate(KNOWN_MODELS[figures_of], spec, dtype)
    return found.total - found.context


def fitted(report: dict[str, Any]) -> str:
    parts = []
    for phase in ("unet", "vae"):
        points = {int(b): v[f"{phase}_phase_peak_above_loaded"] for b, v in report["batches"].items()}
        slope, intercept, _ = fit_per_image(points)
        scale = 2 / (4 if report["dtype"] == "float32" else 2)  # the figures are for 2-byte activations
        parts.append(
            f"{phase}_per_image={slope * scale / GIB:.3f} GiB, {phase}_fixed={intercept * scale / GIB:.3f} GiB"
        )
    return "; ".join(parts)


def main(paths: list[str]) -> int:
    from synthset.testing.replicas import REPLICAS

    reports = [r for path in paths for r in json.loads(Path(path).read_text())]
    print("| model | dtype | batch | measured peak above imports GiB | formula GiB | error |")
    print("|---|---|---|---|---|---|")
    rows = []
    for report in reports:
        replica = REPLICAS[report["replica"]]
        checks = [(replica.hub_id, "")]
        if report["replica"] == "sd21":
            checks.append((REPLICAS["sd21-base"].hub_id, " (from sd21-base's figures x 2.25)"))
        for batch in report["batches"]:
            measured = measured_peak(report, batch)
            for figures_of, note in checks:
                formula = predicted(replica.hub_id, figures_of, int(batch), replica.native_size, report["dtype"])
                error = (formula - measured) / measured
                rows.append(error)
                print(f"| {report['replica']}{note} | {report['dtype']} | {batch} | {measured / GIB:.2f} | "
                      f"{formula / GIB:.2f} | {error:+.1%} |")  # fmt: skip
    print()
    for report in reports:
        print(f"{report['replica']} {report['dtype']}: {fitted(report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
