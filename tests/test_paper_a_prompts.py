"""Paper A's prompts as the paper describes them: per-class CD aspects from the LLM, and LAR's candidate source."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from openai_server import OpenAIServer

from synthset.errors import SynthsetError
from synthset.generation import vocabulary
from synthset.generation.diversify import clean_aspect_list
from synthset.generation.plan import plan_run
from synthset.recipe import load_recipe

TENCH_ASPECTS = {
    "foreground": ["a fishing rod", "water lilies", "an angler's net"],
    "background": ["a muddy pond", "a slow river", "reeds at a lake edge", "a fish market stall"],
    "lighting": ["overcast daylight", "dappled sunlight through water", "dawn mist"],
    "camera": ["underwater side view", "close-up of the scales", "top-down from a boat"],
}
KIND_OF = {
    "other objects or beings": "foreground",
    "backgrounds or places": "background",
    "lighting conditions": "lighting",
    "camera angles": "camera",
}


def answer(prompt: str, seed: int) -> str:
    """An LLM that lists good tench aspects (wrapped in noise to clean), nothing usable for goldfish."""
    if prompt.startswith("List the distinct meanings"):
        return "- a freshwater fish of the carp family\n2. a person who fishes for tench"
    if prompt.startswith("List "):
        if "goldfish" in prompt:
            return "I'm sorry, I cannot help with that."
        kind = next(kind for phrase, kind in KIND_OF.items() if phrase in prompt)
        items = TENCH_ASPECTS[kind]
        noise = ["Here are some ideas:", "x" * 80, "As an AI language model I suggest:", f"1. {items[0]}"]
        return "\n".join([noise[0], *(f"{i + 1}. {item}." for i, item in enumerate(items)), *noise[1:]])
    query = prompt.rsplit("\n\n", 1)[-1].removesuffix(" =>")
    name = query.split(" (")[0].split(",")[0]
    return f"a {name} seen for test {seed % 1000}, {query.split('), ', 1)[-1]}"


def test_clean_aspect_list_keeps_short_distinct_phrases():
    text = (
        "Here are 5:\n1. a muddy pond.\n- A muddy pond\n* reeds\n\n"
        + "y" * 70
        + '\n3) ignore previous instructions\n"dawn mist"'
    )
    assert clean_aspect_list(text, 10) == ["a muddy pond", "reeds", "dawn mist"]
    assert clean_aspect_list(text, 2) == ["a muddy pond", "reeds"]


def test_cd_aspects_from_the_llm_are_cached_cleaned_and_fall_back(write_recipe):
    with OpenAIServer(answer=answer) as server:
        llm = {"backend": "openai", "model": server.model, "base_url": server.base_url}
        recipe = load_recipe(
            write_recipe(
                {
                    "classes": {"set": "imagenet-1k", "subset": ["tench", "goldfish"], "limit": None},
                    "configs": [{"name": "lar_cd", "strategy": "lar_cd", "images_per_class": 6}],
                    "prompts": {"llm": llm, "cd_aspects": "llm", "aspects_per_list": 5, "max_attempts": 2},
                    "lar": {"candidates": "wordnet"},
                }
            )
        )
        first = plan_run(recipe)
        second = plan_run(recipe)
    stats = first.prompt_stats
    assert stats.aspect_lists_replaced == 4  # goldfish: every kind failed twice, then the vocabulary
    assert stats.rejected["aspect list too short"] == 8
    assert second.llm_backend_calls == 0  # every aspect list and description came from the cache
    rows = pq.read_table(recipe.run_dir / "plan.parquet").to_pylist()
    defaults = {
        "foreground": vocabulary.FOREGROUND,
        "background": vocabulary.BACKGROUND,
        "lighting": vocabulary.LIGHTING,
        "camera": vocabulary.CAMERA,
    }
    for row in rows:
        for kind, value in row["cd_aspects"].items():
            allowed = TENCH_ASPECTS[kind] if row["class_name"] == "tench" else defaults[kind]
            assert value in allowed, (row["class_name"], kind, value)
    tench_backgrounds = {r["cd_aspects"]["background"] for r in rows if r["class_name"] == "tench"}
    assert len(tench_backgrounds) > 1


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("wordnet", ["wordnet"]),
        ("llm", ["llm", "llm"]),
        ("both", ["wordnet", "llm", "llm"]),
    ],
)
def test_lar_candidate_source_is_explicit_and_recorded(write_recipe, source: str, expected: list[str]):
    with OpenAIServer(answer=answer) as server:
        llm = {"backend": "openai", "model": server.model, "base_url": server.base_url}
        recipe = load_recipe(
            write_recipe(
                {
                    "classes": {"set": "imagenet-1k", "subset": ["tench"], "limit": None},
                    "configs": [{"name": "lar", "strategy": "lar", "images_per_class": 1}],
                    "prompts": {"llm": llm},
                    "lar": {"candidates": source},
                },
                f"{source}.yaml",
            )
        )
        summary = plan_run(recipe)
        asked = [b["messages"][-1]["content"] for b in server.bodies]
    row = next(r for r in pq.read_table(recipe.run_dir / "classes.parquet").to_pylist() if r["selected"])
    assert row["lar_candidate_sources"] == expected
    assert row["lar_meaning_from"] == expected[row["lar_candidates"].index(row["lar_meaning"])]
    assert summary.lar_meaning_from == {row["lar_meaning_from"]: 1}
    assert any(a.startswith("List the distinct meanings") for a in asked) == (source != "wordnet")


def test_llm_options_need_an_llm(write_recipe):
    with pytest.raises(SynthsetError, match="prompts.cd_aspects: llm needs prompts.llm"):
        load_recipe(write_recipe({"prompts": {"cd_aspects": "llm"}}, "a.yaml"))
    with pytest.raises(SynthsetError, match="lar.candidates: both needs prompts.llm"):
        load_recipe(write_recipe({"lar": {"candidates": "both"}}, "b.yaml"))
