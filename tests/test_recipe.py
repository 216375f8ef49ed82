from pathlib import Path

import pytest
import yaml

from synthset.errors import SynthsetError
from synthset.recipe import load_recipe


def test_defaults_and_run_dir(write_recipe):
    recipe = load_recipe(write_recipe())
    assert recipe.generator.attention == "auto"
    assert recipe.storage.quality == 95
    assert recipe.run_dir.name == "t"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"generator": {"stepz": 3}}, "generator.stepz: unknown key"),
        ({"colour": "red"}, "colour: unknown key"),
        (
            {"generator": {"steps": "many"}},
            "generator.steps: Input should be a valid integer (got 'many')",
        ),
        (
            {"configs": [{"name": "naive", "images_per_class": 0}]},
            "configs[0].images_per_class: Input should be greater than 0",
        ),
        (
            {"configs": [{"name": "a", "strategy": "fancy", "images_per_class": 1}]},
            "configs[0].strategy: unknown strategy 'fancy'",
        ),
        (
            {"generator": {"attention": "flash"}},
            "generator.attention: Input should be 'auto', 'sdpa' or 'xformers'",
        ),
        (
            {"configs": [{"name": "a", "images_per_class": 1}, {"name": "a", "images_per_class": 2}]},
            "config name 'a' appears more than once",
        ),
        ({"generator": {"width": 30}}, "generator.width: Input should be a multiple of 8"),
        # strict types: a quoted number or a bool is refused, not converted
        (
            {"configs": [{"name": "naive", "images_per_class": "2"}]},
            "configs[0].images_per_class: Input should be a valid integer (got '2')",
        ),
        ({"generator": {"steps": 2.0}}, "generator.steps: Input should be a valid integer (got 2.0)"),
        ({"generator": {"guidance": "5"}}, "generator.guidance: Input should be a valid number (got '5')"),
        ({"storage": {"shard_size": True}}, "storage.shard_size: Input should be a valid integer (got True)"),
        ({"seed": "7"}, "seed: Input should be a valid integer (got '7')"),
    ],
)
def test_bad_recipe_is_one_line_naming_file_and_key(write_recipe, changes, expected):
    path = write_recipe(changes)
    with pytest.raises(SynthsetError) as raised:
        load_recipe(path)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert expected in message


def test_missing_field_and_missing_file(tmp_path: Path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "configs": [{"name": "a", "images_per_class": 1}]}))
    with pytest.raises(SynthsetError, match=r"r\.yaml: generator: Field required$"):
        load_recipe(path)
    with pytest.raises(SynthsetError, match="no such recipe file"):
        load_recipe(tmp_path / "absent.yaml")


def test_invalid_yaml_names_the_line(tmp_path: Path):
    path = tmp_path / "r.yaml"
    path.write_text("name: x\nconfigs: [unclosed\n")
    with pytest.raises(SynthsetError, match=r"r\.yaml: line \d+: not valid YAML"):
        load_recipe(path)


@pytest.mark.parametrize(
    ("resize", "generated", "stored"),
    [(None, (768, 512), (768, 512)), (512, (768, 512), (768, 512)), (256, (768, 512), (384, 256)),
     (300, (512, 683), (300, 400)), (64, (100, 100), (64, 64))],
)  # fmt: skip
def test_the_stored_image_size_is_the_one_the_writer_makes(resize, generated, stored):
    """One formula: the plan sizes the Hub layout by it, the writer resizes to it, validation expects it."""
    import io

    from PIL import Image

    from synthset.generation.writer import encode_image
    from synthset.recipe import StorageSpec

    storage = StorageSpec(format="png", resize=resize)
    assert storage.stored_size(*generated) == stored
    written = encode_image(Image.new("RGB", generated, (200, 10, 10)), storage)
    assert Image.open(io.BytesIO(written)).size == stored


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            b"name: x\nseed: 7\nconfigs: []\nseed: 8\n",
            "line 4: not valid YAML (the key 'seed' is written twice in one mapping)",
        ),
        (
            b"name: x\ngenerator:\n  steps: 2\n  steps: 3\n",
            "line 4: not valid YAML (the key 'steps' is written twice in one mapping)",
        ),
        (bytes(range(256)), "not a recipe file: byte 128 is not UTF-8 text"),
        (
            b"name: x\n\x07bell: 1\n",
            "not valid YAML (unacceptable character #x0007: special characters are not allowed in "
            '"<unicode string>", position 8)',
        ),
    ],
)
def test_a_repeated_key_or_a_binary_file_is_one_line(tmp_path: Path, text: bytes, expected: str):
    path = tmp_path / "r.yaml"
    path.write_bytes(text)
    with pytest.raises(SynthsetError) as raised:
        load_recipe(path)
    assert str(raised.value) == f"{path}: {expected}"


def test_yaml_merge_keys_may_override_what_they_merge(tmp_path: Path):
    path = tmp_path / "r.yaml"
    base = "base: &g {model: m, steps: 2}\n"
    path.write_text(base + "generator:\n  <<: *g\n  steps: 4\n")
    from synthset.recipe import read_yaml_file

    assert read_yaml_file(path, "recipe")["generator"] == {"model": "m", "steps": 4}
