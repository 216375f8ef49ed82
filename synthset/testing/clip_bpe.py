"""CLIP's real tokenizer files (vocab.json + merges.txt), written offline from the copy open_clip ships.

Every CLIP tokenizer of the Stable Diffusion family (SD 1.x's, SD 2.x's OpenCLIP-H, both of SDXL's) is
the one byte-level BPE of OpenAI's CLIP: 49,152 merges in `bpe_simple_vocab_16e6.txt.gz`, of which the
first 48,894 are used, giving a vocab of 256 bytes + 256 end-of-word bytes + 48,894 merges + 2 specials
= 49,408 entries. open_clip ships that file inside its package, and its `SimpleTokenizer` builds the
vocab in exactly the order transformers' `vocab.json` lists it (`<|startoftext|>` = 49406,
`<|endoftext|>` = 49407), so the files written here make the Hub's `CLIPTokenizer` with no download.
tests/test_replicas.py checks the token ids against open_clip's own tokenizer.
"""

from __future__ import annotations

import gzip
import json
from functools import cache
from pathlib import Path

CLIP_VOCAB_SIZE = 49408
_MERGES_USED = CLIP_VOCAB_SIZE - 2 * 256 - 2  # 48,894


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable unicode map (the byte-level BPE alphabet)."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes), strict=True))


def open_clip_bpe_file() -> Path:
    """The merges file inside the installed open_clip package."""
    import open_clip

    return Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"


@cache
def clip_merges() -> tuple[str, ...]:
    """The merges CLIP uses, each "a b", in rank order (the file's first line is a version header)."""
    lines = gzip.decompress(open_clip_bpe_file().read_bytes()).decode("utf-8").split("\n")
    return tuple(lines[1 : 1 + _MERGES_USED])


def clip_vocab() -> dict[str, int]:
    """Token -> id, in CLIP's order: bytes, bytes + ``</w>``, merged pairs, then the two specials."""
    alphabet = list(bytes_to_unicode().values())
    tokens = alphabet + [c + "</w>" for c in alphabet] + ["".join(m.split()) for m in clip_merges()]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(tokens)}


def write_clip_bpe_files(out: Path) -> None:
    """Write vocab.json and merges.txt as the Hub's CLIP tokenizer folders hold them."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps(clip_vocab(), ensure_ascii=False), "utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(clip_merges()) + "\n", "utf-8")
