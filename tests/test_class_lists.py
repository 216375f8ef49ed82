import re

import pytest

from synthset.classes import NAMED_SETS, load_class_set
from synthset.errors import SynthsetError

# name -> (class count, first class, last class), as the sources in synthset/classes/data/README.md give them
FEWSHOT_SETS = {
    "caltech101": (101, "off-center face", "yin and yang symbol"),
    "flowers102": (102, "pink primrose", "blackberry lily"),
    "oxford_pets": (37, "Abyssinian", "Yorkshire Terrier"),
    "food101": (101, "apple pie", "waffles"),
    "dtd": (47, "banded", "zigzagged"),
    "eurosat": (10, "annual crop land", "lake or sea"),
    "fgvc_aircraft": (100, "707-320", "Yak-42"),
    "stanford_cars": (196, "AM General Hummer SUV 2000", "smart fortwo Convertible 2012"),
    "sun397": (397, "abbey", "youth hostel"),
}


def test_every_packaged_set_is_a_named_set():
    assert set(FEWSHOT_SETS) <= set(NAMED_SETS)
    assert "imagenet-1k" in NAMED_SETS


@pytest.mark.parametrize("name", sorted(FEWSHOT_SETS))
def test_packaged_set_loads_in_label_order(name: str):
    count, first, last = FEWSHOT_SETS[name]
    classes = load_class_set(name)
    assert len(classes) == count
    assert [c.label for c in classes] == list(range(count))
    assert len({c.label_name for c in classes}) == count
    assert all(c.label_name == c.class_name for c in classes)  # no name is shared, so none is suffixed
    assert all(c.class_name == c.class_name.strip() and "  " not in c.class_name for c in classes)
    assert (classes[0].class_name, classes[-1].class_name) == (first, last)


def test_standard_order_where_sources_disagree():
    # Caltech101 without BACKGROUND_Google: Faces, Faces_easy, Leopards, Motorbikes, then lower-case folders.
    caltech = [c.class_name for c in load_class_set("caltech101")]
    assert caltech[:5] == ["off-center face", "centered face", "leopard", "motorbike", "accordion"]
    assert "background" not in caltech
    assert "head of a crocodile" in caltech
    # torchvision sorts Food-101's class names: cheese_plate before cheesecake.
    food = [c.class_name for c in load_class_set("food101")]
    assert food[16:18] == ["cheese plate", "cheesecake"]
    # SUN397 follows ClassName.txt: /j/jail/indoor before /j/jail_cell.
    sun = [c.class_name for c in load_class_set("sun397")]
    assert sun[206:208] == ["jail indoor", "jail cell"]
    # Oxford-IIIT Pet class ids run alphabetically regardless of case (cats and dogs mixed).
    pets = [c.class_name for c in load_class_set("oxford_pets")]
    assert pets[:3] == ["Abyssinian", "American Bulldog", "American Pit Bull Terrier"]


def test_unknown_set_error_lists_the_named_sets():
    with pytest.raises(SynthsetError) as error:
        load_class_set("oxford_flowers")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("classes.set: unknown class set 'oxford_flowers' (named sets: imagenet-1k, caltech101,")
    listed = re.search(r"named sets: ([^;]*);", message)[1].split(", ")
    assert listed == list(NAMED_SETS)
