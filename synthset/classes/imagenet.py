"""ImageNet-1k in the standard label order, from the WordNet synset files that `timm` ships.

timm carries `imagenet_synsets.txt` (the 1,000 wnids in label order) and the wnid -> lemmas and
wnid -> gloss tables for all of ImageNet-21k, so the classes, their names and their glosses need no
download. The class name is the first lemma ("tench" for "tench, Tinca tinca").
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

from synthset.classes.info import ClassInfo, unique_label_names


def timm_info_dir() -> Path:
    return Path(str(resources.files("timm.data") / "_info"))


def _read_table(path: Path) -> dict[str, str]:
    table = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            wnid, _, value = line.partition("\t")
            table[wnid] = value.strip()
    return table


@functools.cache
def wordnet_lemmas() -> dict[str, list[str]]:
    """wnid -> lemmas for every ImageNet-21k synset."""
    table = _read_table(timm_info_dir() / "imagenet_synset_to_lemma.txt")
    return {wnid: [lemma.strip() for lemma in value.split(",")] for wnid, value in table.items()}


@functools.cache
def wordnet_glosses() -> dict[str, str]:
    """wnid -> WordNet definition for every ImageNet-21k synset."""
    return _read_table(timm_info_dir() / "imagenet_synset_to_definition.txt")


@functools.cache
def _imagenet_1k() -> tuple[ClassInfo, ...]:
    wnids = (timm_info_dir() / "imagenet_synsets.txt").read_text(encoding="utf-8").split()
    lemmas, glosses = wordnet_lemmas(), wordnet_glosses()
    names = [lemmas[wnid][0] for wnid in wnids]
    label_names = unique_label_names(names, wnids)
    return tuple(
        ClassInfo(label=i, class_name=names[i], label_name=label_names[i], wnid=wnid, gloss=glosses.get(wnid))
        for i, wnid in enumerate(wnids)
    )


def load_imagenet_1k() -> list[ClassInfo]:
    return list(_imagenet_1k())


@functools.cache
def _synsets_by_lemma() -> dict[str, tuple[str, ...]]:
    index: dict[str, list[str]] = {}
    for wnid, lemmas in wordnet_lemmas().items():
        for lemma in lemmas:
            index.setdefault(lemma.lower(), []).append(wnid)
    return {lemma: tuple(wnids) for lemma, wnids in index.items()}


def synsets_sharing_a_lemma(name: str) -> list[str]:
    """Every ImageNet-21k synset with `name` among its lemmas: the candidate meanings of an ambiguous name.

    "crane" gives n02012849 (the bird) and n03126707 (the machine), each with its WordNet gloss.
    """
    return list(_synsets_by_lemma().get(name.lower(), ()))


def synonym_string(info: ClassInfo) -> str:
    """The class's full WordNet synonym string ("tench, Tinca tinca"); the class name for a class without a wnid.

    This is the ImageNet-1k class string paper B's authors prompt with for ImageNet-LT (their count file
    reads e.g. `0 "tench, Tinca tinca" 1230`); timm's lemma table gives the same strings.
    """
    lemmas = wordnet_lemmas().get(info.wnid or "")
    return ", ".join(lemmas) if lemmas else info.class_name
