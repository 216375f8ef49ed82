"""The plan stage against several LLM servers: the same plan whatever the servers, counts, progress, failure."""

from __future__ import annotations

import re
import sqlite3
import sys
from pathlib import Path

import pytest

from synthset.cli import main
from synthset.generation import plan
from synthset.generation.plan import classes_at_once, plan_run
from synthset.recipe import load_recipe
from tests.openai_server import OpenAIServer, describe_query

CLASSES = {"set": "imagenet-1k", "limit": 6}
CONFIGS = [{"name": "lar_cd_sd", "strategy": "lar_cd_sd", "images_per_class": 5, "sd_ratio": 0.4}]


def picky_answer(prompt: str, seed: int) -> str:
    """Every third answer is a refusal, which the plan rejects and asks again with a new seed."""
    return "I'm sorry, I cannot help with that." if seed % 3 == 0 else describe_query(prompt, seed)


@pytest.fixture
def servers():
    running = [OpenAIServer(answer=picky_answer, delay=0.002).start() for _ in range(3)]
    yield running
    for server in running:
        server.stop()


def _recipe_file(write_recipe, servers: list[OpenAIServer], name: str, **llm_changes) -> Path:
    llm = {"backend": "openai", "model": "test-model", "base_url": [s.base_url for s in servers], "concurrency": 2}
    # cd_aspects llm: each class also asks for its own aspect lists, from the threads writing classes at once.
    prompts = {"llm": {**llm, **llm_changes}, "max_attempts": 2, "cd_aspects": "llm"}
    return write_recipe({"name": name, "classes": CLASSES, "configs": CONFIGS, "prompts": prompts}, f"{name}.yaml")


def _recipe(write_recipe, servers: list[OpenAIServer], name: str):
    return load_recipe(_recipe_file(write_recipe, servers, name))


def test_the_plan_is_the_same_file_with_one_server_or_three(write_recipe, servers, monkeypatch: pytest.MonkeyPatch):
    one = _recipe(write_recipe, servers[:1], "one")
    three = _recipe(write_recipe, servers, "three")
    depths = []
    real = plan.classes_at_once
    monkeypatch.setattr(plan, "classes_at_once", lambda llm, counts: depths.append(real(llm, counts)) or depths[-1])
    first, second = plan_run(one), plan_run(three)
    assert depths == [2, 4]  # ceil(2 * slots / 5 rows per class) + 1 with 2 and 6 slots: classes at once
    assert (one.run_dir / "plan.parquet").read_bytes() == (three.run_dir / "plan.parquet").read_bytes()
    assert first.prompt_stats == second.prompt_stats
    assert first.prompt_stats.rejected and first.prompt_stats.replaced  # refusals were retried, some replaced
    assert first.prompt_stats.aspect_lists_replaced == 6 * 4  # each class asked for its 4 lists (none came)
    assert second.llm_backend_calls == first.llm_backend_calls
    assert all(server.answered > 0 for server in servers)
    assert sum(s.chat_requests for s in servers) == first.llm_backend_calls + second.llm_backend_calls  # once each

    # Writing one class at a time gives the same plan and the same counts: nothing depends on the overlap.
    monkeypatch.setattr(plan, "classes_at_once", lambda llm, counts: 1)
    serial = _recipe(write_recipe, servers[:1], "serial")
    third = plan_run(serial)
    assert (serial.run_dir / "plan.parquet").read_bytes() == (one.run_dir / "plan.parquet").read_bytes()
    assert third.prompt_stats == first.prompt_stats


def test_classes_at_once_fills_the_slots_twice_and_stays_bounded():
    class Fake:
        def __init__(self, slots: int) -> None:
            self.slots = slots

    assert classes_at_once(None, {0: 1300}) == 1  # the template backend: one class at a time
    assert classes_at_once(Fake(0), {0: 1300}) == 1  # a local LM: one call at a time
    assert classes_at_once(Fake(4 * 256), {i: 1300 for i in range(1000)}) == 3  # 6x ImageNet on 4 vLLM servers
    assert classes_at_once(Fake(8), {i: 100 for i in range(10)}) == 2
    assert classes_at_once(Fake(4 * 256), {i: 16 for i in range(100)}) == plan.MAX_CLASSES_AT_ONCE


def test_progress_and_summary_name_the_servers(write_recipe, servers, capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # synthset's own bars show on a terminal only
    assert main(["plan", str(_recipe_file(write_recipe, servers[:2], "cli"))]) == 0
    captured = capsys.readouterr()
    # One bar over the whole plan's rows, with rate and ETA, and the LLM's state beside it.
    final = captured.err.replace("\r", "\n").strip().splitlines()[-1]
    assert re.match(
        r"plan: 100%\|.*\| 30/30 \[\d\d:\d\d<00:00, +[\d.]+row/s, "
        r"lar_cd_sd band 0; LLM \d+ sent, 0 cached, servers 2/2 up\]",
        final,
    ), final
    summary = next(line for line in captured.out.splitlines() if line.startswith("LLM servers: "))
    a, b = (s.base_url for s in servers[:2])
    assert re.fullmatch(
        rf"LLM servers: {a} answered \d+; {b} answered \d+; 0 requests failed over to another server", summary
    )


def test_all_servers_dying_mid_plan_is_one_line_and_a_rerun_sends_only_the_rest(write_recipe, servers, capsys):
    path = _recipe_file(write_recipe, servers[:2], "dying", max_retries=1)
    for server in servers[:2]:
        server.fail_from = 10  # from each server's 11th request on, every answer is HTTP 503
        server.fail_status = 503
    assert main(["plan", str(path)]) == 2
    error = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    a, b = (f"{s.base_url}/chat/completions" for s in servers[:2])
    assert re.fullmatch(
        rf"synthset: error: openai backend: all 2 endpoints are failing: {a} failed after \d+ attempts "
        rf"\(last: HTTP 503: .*\); {b} failed after \d+ attempts \(last: HTTP 503: .*\)",
        error,
    ), error
    recipe = load_recipe(path)
    assert not (recipe.run_dir / "plan.parquet").exists()
    rows = sqlite3.connect(recipe.run_dir / "cache" / "llm.sqlite").execute("SELECT prompt, seed FROM completions")
    answered = {(prompt, int(seed) % 2**31) for prompt, seed in rows}
    assert len(answered) == sum(s.answered for s in servers[:2]) > 0  # every answer received is on disk

    sent_before = [s.chat_requests for s in servers[:2]]
    for server in servers[:2]:
        server.fail_from = None
    summary = plan_run(recipe)
    assert summary.rows == 30
    resent = [
        (b["messages"][0]["content"], b["seed"])
        for s, n in zip(servers[:2], sent_before, strict=True)
        for b in s.bodies[n:]
    ]
    assert len(resent) == summary.llm_backend_calls > 0
    assert not answered & set(resent)  # the rerun asked only what had no answer yet
