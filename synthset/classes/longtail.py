"""Long-tail class frequencies: the real per-class counts of an ImageNet-LT style train list.

The ImageNet-LT release gives its train split as a text file, `<image path> <label>` per line. Fill-up
configs give each class `target - count` synthetic images, and the card and the evaluation report the
usual buckets of the real counts: many (> 100 images), medium (20..100) and few (< 20).
"""

from __future__ import annotations

from pathlib import Path

from synthset.errors import RecipeError

MANY_ABOVE = 100
FEW_BELOW = 20


def read_train_list_counts(path: Path, num_classes: int) -> list[int]:
    """Images per label in a `<path> <label>` list; a malformed line or label is a one-line error."""
    if not Path(path).is_file():
        raise RecipeError(f"fill_up.train_list: no such file {str(path)!r}")
    counts = [0] * num_classes
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            parts = line.rsplit(maxsplit=1)
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise RecipeError(f"{path}:{number}: expected '<image path> <label>', got {line.strip()!r}")
            label = int(parts[1])
            if not 0 <= label < num_classes:
                raise RecipeError(f"{path}:{number}: label {label} outside the class set (0..{num_classes - 1})")
            counts[label] += 1
    return counts


def frequency_bucket(count: int) -> str:
    if count > MANY_ABOVE:
        return "many"
    return "few" if count < FEW_BELOW else "medium"


def bucket_table(real_counts: dict[int, int], synthetic_counts: dict[int, int]) -> list[tuple[str, int, int, int]]:
    """(bucket, classes, real images, synthetic images) for many / medium / few, over the given classes."""
    table = []
    for bucket in ("many", "medium", "few"):
        labels = [label for label, count in real_counts.items() if frequency_bucket(count) == bucket]
        table.append(
            (bucket, len(labels), sum(real_counts[i] for i in labels), sum(synthetic_counts.get(i, 0) for i in labels))
        )
    return table
