"""Curated vocabularies for contextual diversification, and in-context examples for the LLM prompts.

The template backend combines these words directly (the no-LLM baseline); with an LLM they are the
sampled aspects the description must combine. A recipe can replace any list (`prompts.aspects`).
The examples follow SynCLR's caption prompt: `"<category>, <aspects> => <description>"` lines.
"""

from __future__ import annotations

FOREGROUND = (
    "no other objects",
    "a person nearby",
    "a child",
    "a dog",
    "a group of people",
    "another one of its kind",
    "flowers",
    "a bicycle",
    "a wooden bench",
    "a basket",
    "rocks",
    "fallen leaves",
    "a car",
    "a cup of coffee",
    "a cat",
    "tall grass",
)

BACKGROUND = (
    "a city street",
    "a forest",
    "a beach",
    "a kitchen",
    "a living room",
    "a garden",
    "a snowy field",
    "a lake shore",
    "a market",
    "a desert",
    "a farm",
    "a mountain trail",
    "an office",
    "a park",
    "a riverbank",
    "a workshop",
    "a parking lot",
    "a studio with a plain backdrop",
)

LIGHTING = (
    "bright daylight",
    "golden hour light",
    "overcast light",
    "soft morning light",
    "at night under street lights",
    "dim indoor light",
    "harsh midday sun",
    "backlit by the sun",
    "studio lighting",
    "foggy light",
)

CAMERA = (
    "close-up shot",
    "wide-angle shot",
    "from a low angle",
    "from above",
    "side view",
    "front view",
    "telephoto shot",
    "macro shot",
    "handheld snapshot",
    "shallow depth of field",
)

CD_EXAMPLES = (
    (
        "goldfinch",
        "foreground: flowers; background: a garden; lighting: soft morning light; camera: close-up shot",
        "a goldfinch perched among thistle flowers in a garden, soft morning light, close-up",
    ),
    (
        "fire truck",
        "foreground: a group of people; background: a city street; lighting: at night under street lights; "
        "camera: wide-angle shot",
        "a red fire truck parked on a city street at night as a crowd watches, wide-angle view",
    ),
    (
        "espresso maker",
        "foreground: a cup of coffee; background: a kitchen; lighting: bright daylight; camera: side view",
        "a steel espresso maker beside a fresh cup of coffee on a sunny kitchen counter, side view",
    ),
    (
        "golden retriever",
        "foreground: a child; background: a park; lighting: golden hour light; camera: from a low angle",
        "a golden retriever running with a child across a park at golden hour, seen from a low angle",
    ),
    (
        "canoe",
        "foreground: no other objects; background: a lake shore; lighting: foggy light; camera: telephoto shot",
        "an empty wooden canoe resting on a misty lake shore, telephoto shot",
    ),
    (
        "mushroom",
        "foreground: fallen leaves; background: a forest; lighting: overcast light; camera: macro shot",
        "a brown mushroom growing through fallen leaves on the forest floor, overcast, macro shot",
    ),
)

SD_EXAMPLES = (
    ("goldfinch", "watercolor painting", "a watercolor painting of a goldfinch on a branch in soft yellow washes"),
    ("fire truck", "cartoon", "a cheerful cartoon fire truck with big round wheels racing down the street"),
    ("espresso maker", "pencil sketch", "a detailed pencil sketch of an espresso maker on a table"),
    ("golden retriever", "origami", "an origami golden retriever folded from orange paper"),
    ("canoe", "3D render", "a 3D render of a wooden canoe floating on calm turquoise water"),
    ("mushroom", "stained glass", "a stained glass window showing a red mushroom in a green meadow"),
)
