"""The plan stage with a real LLM backend: the tiny transformers LM and a loopback OpenAI-compatible server."""

from __future__ import annotations

import re

import pyarrow.parquet as pq
from openai_server import OpenAIServer

from synthset.generation.plan import plan_run
from synthset.recipe import load_recipe

LADDER = {
    "classes": {"set": "imagenet-1k", "subset": ["tench", "goldfish"], "limit": None},
    "configs": [{"name": "lar_cd_sd", "strategy": "lar_cd_sd", "images_per_class": 4, "sd_ratio": 0.5}],
}


def test_tiny_lm_plan_is_cached_and_garbage_is_replaced(write_recipe):
    recipe = load_recipe(
        write_recipe(
            {
                **LADDER,
                "prompts": {
                    "llm": {"backend": "transformers", "model": "synthset-testing:tiny-lm", "max_new_tokens": 12},
                    "max_attempts": 2,
                },
            }
        )  # fmt: skip
    )
    first = plan_run(recipe)
    stats = first.prompt_stats
    # 8 descriptions + 2 meaning lists; random weights write garbage, so every description is retried once
    # and then replaced by the template, and each rejection is counted.
    assert first.llm_backend_calls == stats.llm_requests + 2
    assert stats.llm_requests == 16 and stats.replaced == 8 and sum(stats.rejected.values()) == 16
    rows = pq.read_table(recipe.run_dir / "plan.parquet").to_pylist()

    second = plan_run(recipe)
    assert second.llm_backend_calls == 0
    assert second.llm_cache_hits == stats.llm_requests  # LAR's meaning lists are reused from classes.parquet
    assert pq.read_table(recipe.run_dir / "plan.parquet").to_pylist() == rows
    lock = (recipe.run_dir / "recipe.lock.yaml").read_text()
    assert re.search(r"llm:\n\s+model: synthset-testing:tiny-lm\n\s+path: .*\n\s+revision: sha256:[0-9a-f]{64}", lock)


def describe_for_the_server(prompt: str, seed: int) -> str:
    """A well-behaved LLM: names the class of the query line, and says which aspect or style it got."""
    query = prompt.rsplit("\n\n", 1)[-1].removesuffix(" =>")
    name = query.split(" (")[0].split(",")[0]
    wanted = query.split("), ", 1)[-1]  # the aspects or the style, after the meaning
    return f"a {name} photographed for test {seed % 1000}, {wanted}"


def test_openai_backend_descriptions_land_in_the_plan(write_recipe):
    with OpenAIServer(answer=describe_for_the_server, fail_first=1) as server:
        llm = {"backend": "openai", "model": server.model, "base_url": server.base_url, "max_retries": 2}
        recipe = load_recipe(write_recipe({**LADDER, "prompts": {"llm": llm}}))
        summary = plan_run(recipe)
        requests = server.chat_requests
    assert summary.prompt_stats.replaced == 0 and summary.prompt_stats.rejected == {}
    assert requests == summary.llm_backend_calls + 1  # the one HTTP 500 was retried
    rows = pq.read_table(recipe.run_dir / "plan.parquet").to_pylist()
    assert len(rows) == 8
    for row in rows:
        assert row["prompt"].startswith(f"a {row['class_name']} photographed for test ")
        if row["strategy"] == "sd":
            assert row["sd_style"] in row["prompt"]
        else:
            assert f"background: {row['cd_aspects']['background']}" in row["prompt"]
