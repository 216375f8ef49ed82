"""`synthset versions`: the repo's tags, each with its configs and row counts read from that tag's README.

A tag whose README cannot be read (deleted, not a synthset card, invalid YAML) is listed with the reason
instead of stopping the listing: one broken old version must not hide the others.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from synthset.errors import SynthsetError, first_line
from synthset.hub.client import REPO_TYPE, check_repo_id, client, hub_errors

README = "README.md"


@dataclass(frozen=True)
class Version:
    tag: str
    commit: str
    rows: dict[str, dict[str, int]]  # config -> split -> rows
    branches: tuple[str, ...]  # branches whose head is this commit
    problem: str | None = None  # why this tag's card could not be read


def natural_key(text: str) -> list[Any]:
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)]


def dataset_infos(card_data: dict[str, Any]) -> list[dict[str, Any]]:
    infos = card_data.get("dataset_info") or []
    return [infos] if isinstance(infos, dict) else list(infos)


def rows_from_card(card_data: dict[str, Any]) -> dict[str, dict[str, int]]:
    """config -> split -> num_examples, from `dataset_info` (a list of configs, or one mapping)."""
    return {
        info.get("config_name", "default"): {s["name"]: int(s.get("num_examples", 0)) for s in info.get("splits", [])}
        for info in dataset_infos(card_data)
    }


def _rows_of_tag(api: Any, repo_id: str, commit: str) -> dict[str, dict[str, int]]:
    from huggingface_hub import DatasetCard

    readme = api.hf_hub_download(repo_id, README, repo_type=REPO_TYPE, revision=commit)
    rows = rows_from_card(DatasetCard.load(readme).data.to_dict())
    if not rows:
        raise ValueError("its README has no dataset_info")
    return rows


def list_versions(repo_id: str) -> list[Version]:
    """Every tag of the dataset repo, oldest name first (v1.0 < v2.0 < v10.0), with its configs' rows."""
    import yaml
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError

    check_repo_id(repo_id)
    api, token = client(require_token=False)
    with hub_errors(repo_id, token, api.endpoint):
        refs = api.list_repo_refs(repo_id, repo_type=REPO_TYPE)
        versions = []
        for ref in sorted(refs.tags, key=lambda r: natural_key(r.name)):
            branches = tuple(b.name for b in refs.branches if b.target_commit == ref.target_commit)
            try:
                rows, problem = _rows_of_tag(api, repo_id, ref.target_commit), None
            except EntryNotFoundError:
                rows, problem = {}, f"no {README}"
            except HfHubHTTPError as error:
                if getattr(error.response, "status_code", None) == 401:
                    raise
                rows, problem = {}, f"cannot read {README}: {first_line(error)}"
            except (ValueError, TypeError, SynthsetError, yaml.YAMLError) as error:
                rows, problem = {}, f"unreadable {README}: {first_line(error)}"
            versions.append(Version(ref.name, ref.target_commit, rows, branches, problem))
    return versions
