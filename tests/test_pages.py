"""The pages a person reads: the card's text, the sample grid, and the review page in headless Chromium."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
from conftest import BASE_RECIPE, TINY_QUALITY, deep_update

from synthset import api
from synthset.cards.grid import HEADER_HEIGHT, LABEL_WIDTH, ladder_order

CHROMIUM = os.environ.get("SYNTHSET_TEST_CHROMIUM", "/usr/bin/chromium")  # Debian's `chromium` package
# The demo's gate on the tiny models: the random checker flags about one image in ten, so there are
# flagged, redrawn and dropped samples to link to.
GATE = {**TINY_QUALITY, "nsfw_adjustment": 0.02, "min_clip_score": 10, "max_redraws": 1,
        "near_duplicates": {"threshold": 0.999}}  # fmt: skip
LAYOUT = """() => {
  const ids = new Set([...document.querySelectorAll('[id]')].map(e => e.id));
  const links = [...document.querySelectorAll('a[href^="#"]')].map(a => a.getAttribute('href').slice(1));
  const boxes = sel => [...document.querySelectorAll(sel)].map(e => e.getBoundingClientRect())
    .filter(r => r.width > 0 && r.height > 0).map(r => [r.left, r.top, r.right, r.bottom]);
  const overlaps = rects => {
    let n = 0;
    for (let i = 0; i < rects.length; i++) for (let j = i + 1; j < rects.length; j++) {
      const [a, b] = [rects[i], rects[j]];
      if (a[0] < b[2] - 0.5 && b[0] < a[2] - 0.5 && a[1] < b[3] - 0.5 && b[1] < a[3] - 0.5) n++;
    }
    return n;
  };
  const captions = boxes('figcaption');
  return {
    links, missing: links.filter(id => !ids.has(id)),
    captions: captions.length, caption_overlaps: overlaps(captions),
    toc_overlaps: overlaps(boxes('nav.contents a')),
    caption_texts: [...document.querySelectorAll('figcaption')].map(f => f.innerText.replace(/\\n/g, ' ')),
    sections: [...document.querySelectorAll('section.cls')].map(s => s.id),
  };
}"""


@pytest.fixture(scope="module")
def carded_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pages")
    changes = {
        "output_dir": str(root / "runs"),
        "classes": {"set": "imagenet-1k", "limit": 4},
        "configs": [
            {"name": "lar_cd", "strategy": "lar_cd", "images_per_class": 4},
            {"name": "naive", "strategy": "naive", "images_per_class": 4, "bands": 2},
        ],
        "quality": GATE,
    }
    recipe = root / "pages.yaml"
    recipe.write_text(yaml.safe_dump(deep_update(BASE_RECIPE, changes)))
    run = api.plan(recipe).summary.run.root
    api.generate(run)
    api.build(run)
    api.card(run, license="apache-2.0")
    return run


def test_card_text_has_no_visible_flaws(carded_run: Path):
    from huggingface_hub import DatasetCard

    body = DatasetCard.load(carded_run / "dataset" / "README.md").text
    assert "#### Data Collection and Processing\n\n| setting | value |\n|---|---|\n| generator |" in body
    assert '(`100 x max(cos(image, "a photo of a <class>"), 0)`)' in body  # in code: `<class>` is not a tag
    assert "Not computed for this release" not in body  # the gate's CLIP scores are there
    assert "Every image's CLIP score was computed by the quality gate when it was made: see Screening below." in body
    assert "- This dataset is released under `apache-2.0` (from the \\`--license\\` option)." in body
    assert "bound by the generator's license" not in body


def test_sample_grid_has_class_columns_and_ladder_rows(carded_run: Path):
    from PIL import Image

    configs = ["naive_2x", "lar_cd", "naive_1x", "naive", "augcond", "lar", "lar_cd_sd_1x", "lar_cd_sd"]
    assert sorted(configs, key=ladder_order) == [
        "naive", "naive_1x", "naive_2x", "lar", "lar_cd", "lar_cd_sd", "lar_cd_sd_1x", "augcond",
    ]  # fmt: skip
    with Image.open(carded_run / "dataset" / "samples.jpg") as grid:
        # 4 classes as columns, 4 configs as rows (naive, naive_1x, naive_2x, lar_cd), 96 px tiles
        assert grid.size == (LABEL_WIDTH + 4 * 96, HEADER_HEIGHT + 4 * 96)
        header = grid.crop((LABEL_WIDTH, 0, grid.width, HEADER_HEIGHT)).convert("L")
        assert min(header.getdata()) < 100  # class names are written above the columns


def test_review_page_navigation_and_layout_in_chromium(carded_run: Path, tmp_path: Path):
    from playwright.sync_api import sync_playwright

    page_file = Path(api.review(carded_run, per_class=6).page.path)
    text = page_file.read_text(encoding="utf-8")
    assert not re.search(r"-0\.0+(?![0-9])", text)  # no negative zero: a score a person reads
    assert "near_duplicatenear_duplicate" not in text
    screenshot = tmp_path / "review-layout.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 900, "height": 800})
            page.goto(page_file.as_uri(), wait_until="load")
            facts = page.evaluate(LAYOUT)
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    print(f"review page screenshot: {screenshot}")
    assert facts["missing"] == []  # every link of the contents lands on its section
    sections = set(facts["sections"])
    assert {f"{config}-{label}" for config in ("lar_cd", "naive") for label in range(4)} == sections
    assert sections <= set(facts["links"]) and {"config-lar_cd", "config-naive"} <= set(facts["links"])
    assert any(link.endswith("-redrawn") for link in facts["links"])  # the tiny gate always redraws some
    assert facts["captions"] > 0 and facts["caption_overlaps"] == 0 and facts["toc_overlaps"] == 0
    caption = re.compile(r"^CLIP (\d+\.\d|-) NSFW (ok|FLAGGED|not checked)( (NSFW|low CLIP|near-dup\.))?$")
    assert [t for t in facts["caption_texts"] if not caption.match(t)] == []
    assert screenshot.stat().st_size > 10_000
