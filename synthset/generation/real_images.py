"""Real images of a class, from a `datasets` dataset or an image folder.

LAR scores candidate meanings against them, and augmentation-conditioning starts from them. Each image
has a stable id (`<source>:<split>:<row>` or the folder-relative path) so a generated row can say which
real images conditioned it. An image that fails to decode is skipped and counted, never fatal.

A dataset's labels are its `label_column` (this class set's labels, or matched by name), or, for detection
data such as COCO and PASCAL VOC, the class of each image's largest object (`real_images.label_from`,
`synthset.classes.labeling`): the probe labels the same rows the same way.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from synthset.errors import SynthsetError, first_line

if TYPE_CHECKING:
    from PIL.Image import Image

    from synthset.classes import ClassInfo
    from synthset.recipe import RealImagesSpec

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


@dataclass
class RealImage:
    id: str
    image: Image


@dataclass
class RealImageSource:
    """Maps each class label of the run to the real images of that class, lazily decoded."""

    spec: RealImagesSpec
    ids_by_label: dict[int, list[str]]
    _dataset: object | None = None
    decode_failures: int = 0
    _failed_ids: set[str] = field(default_factory=set)

    _file_names: list[str | None] | None = None

    def ids_for(self, label: int) -> list[str]:
        return self.ids_by_label.get(label, [])

    def describe(self) -> str:
        if self.spec.folder is not None:
            return f"folder {str(self.spec.folder)!r}"
        return f"dataset {self.spec.dataset!r} split {self.spec.split!r}"

    def file_name(self, image_id: str) -> str | None:
        """The image's file name: from the folder path, or the path a `datasets` image column stored (or None)."""
        if self.spec.folder is not None:
            return Path(image_id).name
        if self._file_names is None:
            column = self._dataset.with_format("arrow")[self.spec.image_column]  # type: ignore[union-attr]
            paths = column.combine_chunks().field("path") if hasattr(column, "combine_chunks") else column.field("path")
            self._file_names = [Path(p).name if p else None for p in paths.to_pylist()]
        return self._file_names[int(image_id.rsplit(":", 1)[1])]

    def _read_bytes(self, image_id: str) -> bytes:
        if self.spec.folder is not None:
            return (Path(self.spec.folder) / image_id).read_bytes()
        row = int(image_id.rsplit(":", 1)[1])
        value = self._dataset[row][self.spec.image_column]  # type: ignore[index]
        if value.get("bytes") is not None:
            return value["bytes"]
        return Path(value["path"]).read_bytes()

    def load(self, image_id: str) -> Image | None:
        """The decoded RGB image, or None (counted) when it does not decode."""
        from PIL import Image as PILImage

        try:
            image = PILImage.open(io.BytesIO(self._read_bytes(image_id)))
            image.load()
            return image.convert("RGB")
        except Exception as error:  # noqa: BLE001 - any undecodable file is skipped, whatever the reason
            if image_id not in self._failed_ids:
                self._failed_ids.add(image_id)
                self.decode_failures += 1
                logger.warning("real image %s skipped: %s", image_id, first_line(error))
            return None

    def images_for(self, label: int, limit: int) -> list[RealImage]:
        """Up to `limit` decodable images of the class, in the source's order (deterministic)."""
        images = []
        for image_id in self.ids_for(label):
            if len(images) == limit:
                break
            image = self.load(image_id)
            if image is not None:
                images.append(RealImage(image_id, image))
        return images


def _class_keys(info: ClassInfo) -> list[str]:
    return [key for key in (info.wnid, info.label_name, info.class_name) if key]


def _from_folder(spec: RealImagesSpec, classes: list[ClassInfo]) -> RealImageSource:
    from synthset.classes import normalized_name

    root = Path(spec.folder)  # type: ignore[arg-type]
    if not root.is_dir():
        raise SynthsetError(f"real_images.folder: no such directory {str(root)!r}")
    folders = {p.name: p for p in sorted(root.iterdir()) if p.is_dir()}
    if spec.match == "name":  # DA-Fusion's Caltech101 rule: folder names lowercased, '_' as a space
        for p in list(folders.values()):
            folders.setdefault(normalized_name(p.name), p)
    ids: dict[int, list[str]] = {}
    for info in classes:
        keys = _class_keys(info) + ([normalized_name(k) for k in _class_keys(info)] if spec.match == "name" else [])
        folder = next((folders[key] for key in keys if key in folders), None)
        if folder is not None:
            files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            ids[info.label] = [p.relative_to(root).as_posix() for p in files]
    return RealImageSource(spec, ids)


def _from_dataset(spec: RealImagesSpec, classes: list[ClassInfo]) -> RealImageSource:
    import datasets

    from synthset.fsutil import looks_local

    local = looks_local(spec.dataset)
    path = Path(spec.dataset).expanduser()
    if local and not path.is_dir():
        raise SynthsetError(f"real_images.dataset: no such directory {spec.dataset!r}")
    try:
        if local and (path / "dataset_info.json").is_file():
            dataset = datasets.load_from_disk(str(path))
            if isinstance(dataset, datasets.DatasetDict):
                dataset = dataset[spec.split]
        else:
            dataset = datasets.load_dataset(str(path) if local else spec.dataset, spec.config, split=spec.split)
    except Exception as error:  # noqa: BLE001 - missing path, unknown repo, bad split: one line for the user
        hint = "" if local else " (looked up on the Hub: a local path starts with ./ or /)"
        raise SynthsetError(
            f"real_images.dataset: cannot load {spec.dataset!r} split {spec.split!r}: {first_line(error)}{hint}"
        ) from None
    columns = [spec.image_column] + ([spec.label_column] if spec.label_from is None else [])
    for column in columns:
        if column not in dataset.column_names:
            raise SynthsetError(
                f"real_images: column {column!r} not in {spec.dataset!r} (columns: {', '.join(dataset.column_names)})"
            )
    if spec.label_from is not None:
        from synthset.classes.labeling import largest_object_labels

        labels = largest_object_labels(dataset, spec.label_from, classes, spec.match, "real_images.label_from").tolist()
    else:
        labels = dataset.with_format("arrow")[spec.label_column].to_pylist()
    dataset = dataset.cast_column(spec.image_column, datasets.Image(decode=False))
    if spec.match == "name" and spec.label_from is None:
        from synthset.classes.labeling import labels_by_name

        feature = dataset.features[spec.label_column]
        if not isinstance(feature, datasets.ClassLabel):
            raise SynthsetError(f"real_images.match: name needs {spec.label_column!r} to be a ClassLabel")
        mapping = labels_by_name(feature.names, classes)
        labels = [mapping[label] if label is not None and label >= 0 else -1 for label in labels]
    ids: dict[int, list[str]] = {}
    for row, label in enumerate(labels):
        ids.setdefault(label, []).append(f"{spec.dataset}:{spec.split}:{row}")
    return RealImageSource(spec, ids, dataset)


def open_real_images(spec: RealImagesSpec, classes: list[ClassInfo]) -> RealImageSource:
    return _from_folder(spec, classes) if spec.folder is not None else _from_dataset(spec, classes)
