"""Publishing on the Hugging Face Hub, every call through `huggingface_hub.HfApi` / `HfFileSystem`.

One module per job: `client` (the API client, repo id check, errors as one line, retries), `manifest`
(manifest.jsonl: what a version holds), `publish` (`synthset push`: a version in many commits through a
pull request, merged and tagged at the end), `versions` (`synthset versions`), `verify` (`synthset
verify`: metadata, footers and a streamed sample by default; `--sample N`, `--full`). The Hub's limits are
in `synthset.run.hub_limits`, where the plan stage checks them too.

The token comes from where huggingface_hub looks (`HF_TOKEN`, then the stored login); it is never printed,
and every error becomes one line with any token scrubbed from it. `HF_ENDPOINT` (a mirror, or the tests'
loopback server) is read by huggingface_hub and datasets at import time; against a server without Xet
storage set `HF_HUB_DISABLE_XET=1` too, before the process starts.
"""

from synthset.hub.publish import PushResult, push_dataset
from synthset.hub.verify import VerifyReport, verify_repo
from synthset.hub.versions import Version, list_versions

__all__ = ["PushResult", "Version", "VerifyReport", "list_versions", "push_dataset", "verify_repo"]
