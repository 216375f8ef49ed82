"""Conditioning pools: which real images may condition each class of an augcond config (decided at plan time).

- A long-tail fill-up (`fill_up`) conditions only on the images of its train list (ImageNet-LT's 115,846),
  never on the rest of the class in `real_images` (full ImageNet has ~1,300 per class; a tail class has 5 in
  the long-tail setting, and conditioning on the others would leak them into the synthetic set). Every list
  entry of a generated class must be found in `real_images`, or the plan stops with one line naming it.
- A few-shot config conditions on its k shots (`condition_on: shots`, the default) or on the training split
  its shots were drawn from (`condition_on: train_split`, as paper B's authors did).
- Any other augcond config conditions on every image of the class in `real_images`.

The pools are written to conditioning_pool.parquet (`synthset.run.pools`) and generation refuses a row whose
`cond_images` are outside its pool.
"""

from __future__ import annotations

from pathlib import Path

from synthset.classes import ClassInfo
from synthset.errors import SynthsetError
from synthset.fsutil import sha256_file
from synthset.generation.draw_shots import ShotDraw
from synthset.generation.real_images import RealImageSource
from synthset.recipe import ConfigSpec, FillUpSpec
from synthset.run.pools import PoolRow


def image_key(file_name: str, wnid: str | None) -> str:
    """How a train-list entry and a source image are matched: the file name without directory or extension.

    A trailing `_<wnid>` of the class is dropped, so archives that append the class's wnid to each file name
    (`n01440764_10026_n01440764.JPEG`) still match the list's `n01440764_10026.JPEG`.
    """
    stem = Path(file_name).stem
    if wnid and stem.endswith(f"_{wnid}") and stem != f"_{wnid}":
        stem = stem[: -len(wnid) - 1]
    return stem


def read_train_list_entries(path: Path, num_classes: int) -> dict[int, list[tuple[int, str]]]:
    """label -> [(line number, image path)] of a `<image path> <label>` list, in file order."""
    from synthset.classes.longtail import read_train_list_counts

    read_train_list_counts(path, num_classes)  # the same one-line errors for a missing file or a bad line
    entries: dict[int, list[tuple[int, str]]] = {}
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                image, label = line.rsplit(maxsplit=1)
                entries.setdefault(int(label), []).append((number, image.strip()))
    return entries


def train_list_pools(
    config: ConfigSpec,
    fill_up: FillUpSpec,
    source: RealImageSource,
    classes: list[ClassInfo],
    selected: list[ClassInfo],
) -> list[PoolRow]:
    """For each generated class: the source ids of its train-list images, each paired with its list entry."""
    entries = read_train_list_entries(fill_up.train_list, len(classes))
    digest = sha256_file(fill_up.train_list)
    rows = []
    for info in selected:
        listed = entries.get(info.label, [])
        if not listed:
            raise SynthsetError(
                f"fill_up.train_list: {config.name}: class {info.label_name!r} (label {info.label}) has no image in "
                f"{fill_up.train_list}, so nothing may condition its generation"
            )
        by_key: dict[str, str] = {}
        for image_id in source.ids_for(info.label):
            name = source.file_name(image_id)
            if name is not None:
                by_key.setdefault(image_key(name, info.wnid), image_id)
        ids = []
        for number, image in listed:
            found = by_key.get(image_key(image, info.wnid))
            if found is None:
                raise SynthsetError(
                    f"fill_up.train_list: {fill_up.train_list}:{number}: {image} (label {info.label}) is not in "
                    f"real_images ({source.describe()}); conditioning images must come from the long-tail train list"
                )
            ids.append(found)
        rows.append(PoolRow(config.name, info.label, "train_list", ids, [image for _, image in listed], digest))
    return rows


def conditioning_pools(
    config: ConfigSpec,
    source: RealImageSource | None,
    classes: list[ClassInfo],
    selected: list[ClassInfo],
    draws: list[ShotDraw],
) -> list[PoolRow]:
    """The pool of every generated class of one config (none for a text-only config)."""
    if config.strategy != "augcond":
        return []
    if source is None:
        raise SynthsetError("real_images: augcond needs the real images that condition the generation")
    if config.fill_up is not None:
        return train_list_pools(config, config.fill_up, source, classes, selected)
    if config.shots is not None:
        on = config.augcond_options.condition_on or "shots"
        mine = [d for d in draws if d.config == config.name]
        return [PoolRow(config.name, d.label, on, d.real_ids if on == "shots" else d.train_ids) for d in mine]
    return [PoolRow(config.name, info.label, "real_images", source.ids_for(info.label)) for info in selected]
