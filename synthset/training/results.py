"""Results as a JSON file (fractions in [0, 1]) and as the table printed at the end of a run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from synthset.fsutil import write_text_atomic

RESULTS_FILE = "results.json"


def write_results(output_dir: Path, results: dict[str, Any]) -> Path:
    path = output_dir / RESULTS_FILE
    write_text_atomic(path, json.dumps(results, indent=2) + "\n")
    return path


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _rows_to_text(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths, strict=True)))
        for r in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _epochs(best: int | list[int]) -> str:
    """The best epoch over the trials' mean (dafusion), or each trial's own (paper_b_code: `12/9/14/12`)."""
    return "/".join(map(str, best)) if isinstance(best, list) else str(best)


def format_table(results: dict[str, Any]) -> str:
    """Top-1 (%) per evaluation split with the shot buckets, or per shot count for the few-shot probe."""
    title = f"{results['mode']} · {results['model']}"
    if results["mode"] == "few_shot":
        dafusion = results.get("protocol") in ("dafusion", "paper_b_code")
        rows = [
            [k, f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f}", str(len(r["trials"])), f"{r['swapped_fraction']:.3f}"]
            + ([_epochs(r["best_epoch"])] if dafusion else [])
            for k, r in results["few_shot"].items()
        ]
        metric = "per-class acc % (mean ± std)" if dafusion else "top-1 % (mean ± std)"
        header = ["shots", metric, "trials", "swapped"] + (["best epoch"] if dafusion else [])
        return f"{title} · {results.get('protocol', 'fast')}\n" + _rows_to_text(header, rows)
    rows = []
    for name, report in [("eval", results["eval"]), *results.get("ood", {}).items()]:
        buckets = [_pct(report.get(bucket)) for bucket in ("many", "medium", "few")]
        rows.append([name, _pct(report.get("top1")), _pct(report.get("top5")), *buckets, str(report["images"])])
    header = ["split", "top-1", "top-5", "many", "medium", "few", "images"]
    return f"{title} · {results['epochs']} epochs\n" + _rows_to_text(header, rows)
