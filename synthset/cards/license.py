"""The dataset's license: the generator model's, never a guess.

Images made by a model inherit the terms of that model's license (CreativeML OpenRAIL-M for Stable
Diffusion 1.x, OpenRAIL++ for 2.x, ...), so the card takes the license from the generator's model card.
When the model card does not state one (a local checkpoint, a bare repo), the recipe must: `license:` in
the recipe (read from the lock, so the published lock says it too) or `--license` on the command line.
If both the model card and the recipe state one and they differ, that is refused rather than resolved
silently, and so is having none at all. Whatever the source, the id must be one the Hub knows
(`hub_licenses`): a free-form name such as "Apache 2.0" is refused with the id it most likely means, and
any other license is `other` with a `license_name` and a `license_link`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthset.cards.hub_licenses import license_problem
from synthset.errors import SynthsetError, first_line
from synthset.models import ResolvedModel


@dataclass(frozen=True)
class License:
    license: str  # a Hub license identifier, e.g. "creativeml-openrail-m", "apache-2.0", "other"
    source: str  # where it came from, for the card's text
    license_name: str | None = None  # for license: other
    license_link: str | None = None


def _from_card_data(data: Any, source: str) -> License | None:
    value = getattr(data, "license", None) if data is not None else None
    if isinstance(value, list):
        value = value[0] if len(value) == 1 else None
    if not value:
        return None
    return License(value, source, getattr(data, "license_name", None), getattr(data, "license_link", None))


def model_card_license(model: ResolvedModel) -> tuple[License | None, str | None]:
    """The generator's license from its model card, and why it could not be read (or None)."""
    if model.source == "local":
        readme = Path(model.load_path) / "README.md"
        if not readme.is_file():
            return None, None
        from huggingface_hub import ModelCard

        return _from_card_data(ModelCard.load(readme).data, f"model card of {model.load_path}"), None
    from huggingface_hub import HfApi

    try:
        info = HfApi().model_info(model.load_path, revision=model.revision)
    except Exception as error:  # noqa: BLE001 - offline, gated, 404: reported, then the recipe decides
        return None, first_line(error)
    return _from_card_data(info.card_data, f"model card of {model.load_path}"), None


def checked(license: License) -> License:
    """`license` if the Hub accepts it as it is; else one SynthsetError line saying what to write instead."""
    problem = license_problem(license.license, license.license_name, license.license_link)
    if problem is not None:
        raise SynthsetError(f"license: {problem} (from the {license.source})")
    return license


def resolve_license(
    model: ResolvedModel,
    recipe_license: str | None,
    override: str | None = None,
    license_name: str | None = None,
    license_link: str | None = None,
) -> License:
    """License for the card: the model card's; else the recipe's `license:` (or `--license`), checked.

    Args:
        model: the generator as the lock pinned it (its model card is read at that revision).
        recipe_license: the recipe's `license:` (None when it states none).
        override: `--license`, which replaces the recipe's.
        license_name, license_link: for `license: other`.

    Raises:
        SynthsetError: no license at all, one the Hub does not know, or the model card and recipe disagree.
    """
    stated_value = override or recipe_license
    stated = None
    if stated_value:
        source = "`--license` option" if override else "recipe (`license:`)"
        stated = checked(License(stated_value, source, license_name, license_link))
    from_model, problem = model_card_license(model)
    if from_model is not None and stated is not None and from_model.license != stated.license:
        raise SynthsetError(
            f"license: the {from_model.source} says {from_model.license!r} but the {stated.source} says "
            f"{stated.license!r}; make them agree"
        )
    if from_model is not None:
        return checked(from_model)
    if stated is not None:
        return stated
    why = f"cannot read its model card ({problem})" if problem else "its model card states no license"
    raise SynthsetError(
        f"license: the generator {model.load_path} {why}; add `license: <hub license id>` to the recipe "
        "(e.g. creativeml-openrail-m) or pass --license"
    )
