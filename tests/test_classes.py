from pathlib import Path

import pytest

from synthset.classes import load_class_set, select_classes
from synthset.errors import SynthsetError


def test_imagenet_1k_standard_order_names_and_glosses():
    classes = load_class_set("imagenet-1k")
    assert len(classes) == 1000
    assert [c.label for c in classes] == list(range(1000))
    assert (classes[0].wnid, classes[0].class_name) == ("n01440764", "tench")
    assert classes[0].gloss.startswith("freshwater dace-like game fish")
    assert (classes[999].wnid, classes[999].class_name) == ("n15075141", "toilet tissue")
    # Two classes are both "crane" (the bird, the machine): prompts say crane, labels stay unique.
    cranes = [c for c in classes if c.class_name == "crane"]
    assert [c.wnid for c in cranes] == ["n02012849", "n03126707"]
    assert [c.label_name for c in cranes] == ["crane (n02012849)", "crane (n03126707)"]
    assert len({c.label_name for c in classes}) == 1000


def test_subset_by_name_or_wnid_keeps_imagenet_labels():
    classes = load_class_set("imagenet-1k")
    chosen = select_classes(classes, ["goldfish", "n15075141", "tench"], None, "imagenet-1k")
    assert [(c.label, c.class_name) for c in chosen] == [
        (0, "tench"),
        (1, "goldfish"),
        (999, "toilet tissue"),
    ]
    assert [c.label for c in select_classes(classes, None, 4, "imagenet-1k")] == [0, 1, 2, 3]


def test_unknown_and_ambiguous_class_names_are_one_line_errors():
    classes = load_class_set("imagenet-1k")
    with pytest.raises(SynthsetError, match=r"^classes\.subset: unknown class 'tenchh' in imagenet-1k$"):
        select_classes(classes, ["tench", "tenchh"], None, "imagenet-1k")
    with pytest.raises(SynthsetError, match="class name 'crane' is ambiguous"):
        select_classes(classes, ["crane"], None, "imagenet-1k")


def test_custom_text_and_yaml_lists(tmp_path: Path):
    text = tmp_path / "flowers.txt"
    text.write_text("# a comment\nrose\n\ntulip\n")
    assert [(c.label, c.class_name) for c in load_class_set(str(text))] == [(0, "rose"), (1, "tulip")]

    listing = tmp_path / "pets.yaml"
    listing.write_text("- cat\n- name: dog\n  gloss: a domestic canine\n")
    pets = load_class_set(str(listing))
    assert [(c.class_name, c.gloss) for c in pets] == [("cat", None), ("dog", "a domestic canine")]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("- cat\n- cat\n", "class 'cat' appears more than once"),
        ("- {nome: cat}\n", "entry 0: needs a class name"),
        ("- {name: cat, colour: red}\n", "entry 0: unknown key 'colour'"),
        ("[]\n", "the class list is empty"),
    ],
)
def test_bad_custom_lists(tmp_path: Path, content: str, expected: str):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(SynthsetError, match=expected):
        load_class_set(str(path))


def test_unknown_class_set():
    with pytest.raises(SynthsetError, match="classes.set: unknown class set 'imagenet-2k'"):
        load_class_set("imagenet-2k")
    with pytest.raises(SynthsetError, match="no such class list file"):
        load_class_set("missing.yaml")
