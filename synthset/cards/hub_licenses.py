"""The license identifiers the Hugging Face Hub accepts in a card's `license:` field.

huggingface_hub does not ship this list (the server checks it when a README is committed), so it is
written down here with its sources:
- https://huggingface.co/docs/hub/repositories-licenses (hub-docs `docs/hub/repositories-licenses.md`):
  the documented table, and the rule for everything else: "In case of `license: other` please add the
  license's text to a `LICENSE` file inside your repo (or contact us to add the license you use to this
  list), and set a name for it in `license_name`."
- huggingface.js `packages/hub/src/types/public.ts` (`type License`, the Hub's own client): the same ids
  plus those added since (llama3, llama3.1, llama3.2, llama3.3, apple-ascl, apple-amlr).
- the dataset card spec (hub-docs `docs/hub/datasetcard.md`): `license_name` is "an id for it ... like
  my-license-1.0", `license_link` is "LICENSE" / "LICENSE.md" (a file in the repo) or a URL.
The live list may have grown since; an id added there later is refused here until it is added below.
"""

from __future__ import annotations

import difflib
import re

HUB_LICENSES_SOURCE = "https://huggingface.co/docs/hub/repositories-licenses"
HUB_LICENSES = (
    "apache-2.0", "mit", "openrail", "bigscience-openrail-m", "creativeml-openrail-m", "bigscience-bloom-rail-1.0",
    "bigcode-openrail-m", "afl-3.0", "artistic-2.0", "bsl-1.0", "bsd", "bsd-2-clause", "bsd-3-clause",
    "bsd-3-clause-clear", "c-uda", "cc", "cc0-1.0", "cc-by-2.0", "cc-by-2.5", "cc-by-3.0", "cc-by-4.0",
    "cc-by-sa-3.0", "cc-by-sa-4.0", "cc-by-nc-2.0", "cc-by-nc-3.0", "cc-by-nc-4.0", "cc-by-nd-4.0",
    "cc-by-nc-nd-3.0", "cc-by-nc-nd-4.0", "cc-by-nc-sa-2.0", "cc-by-nc-sa-3.0", "cc-by-nc-sa-4.0",
    "cdla-sharing-1.0", "cdla-permissive-1.0", "cdla-permissive-2.0", "wtfpl", "ecl-2.0", "epl-1.0", "epl-2.0",
    "etalab-2.0", "eupl-1.1", "agpl-3.0", "gfdl", "gpl", "gpl-2.0", "gpl-3.0", "lgpl", "lgpl-2.1", "lgpl-3.0",
    "isc", "lppl-1.3c", "ms-pl", "mpl-2.0", "odc-by", "odbl", "openrail++", "osl-3.0", "postgresql", "ofl-1.1",
    "ncsa", "unlicense", "zlib", "pddl", "lgpl-lr", "deepfloyd-if-license", "llama2", "llama3", "llama3.1",
    "llama3.2", "llama3.3", "gemma", "apple-ascl", "apple-amlr", "unknown", "other",
)  # fmt: skip
LICENSE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")  # "an id ... like my-license-1.0"


def suggest(value: str) -> str | None:
    """The Hub id a free-form name most likely means: `Apache 2.0` -> `apache-2.0`."""
    normal = re.sub(r"[\s_]+", "-", value.strip().lower()).replace("license", "").strip("-")
    if normal in HUB_LICENSES:
        return normal
    close = difflib.get_close_matches(normal, HUB_LICENSES, n=1, cutoff=0.75)
    return close[0] if close else None


def license_problem(license: str, license_name: str | None, license_link: str | None) -> str | None:
    """Why these card fields would be refused or mislabel the data (one line), or None when they are fine."""
    if license not in HUB_LICENSES:
        guess = suggest(license)
        hint = f"did you mean {guess!r}? " if guess else ""
        return (
            f"{license!r} is not a Hub license id ({hint}see {HUB_LICENSES_SOURCE}); for any other license use "
            "`other` with a license name and link (--license other --license-name NAME --license-link URL)"
        )
    if license == "other":
        if not license_name or not LICENSE_NAME.match(license_name):
            return (
                f"license `other` needs a license name: an id like my-license-1.0 (got {license_name!r}); "
                "pass --license-name"
            )
        if not license_link:
            return "license `other` needs a license link: LICENSE (a file in the repo) or a URL; pass --license-link"
    elif license_name or license_link:
        return f"a license name or link is only for license `other`, not {license!r}"
    return None
