"""Class and device vocabularies of TAU Urban Acoustic Scenes 2020/2022 Mobile.

One place for them: every reader, model head and report uses the same order.
"""

from __future__ import annotations

SCENES: tuple[str, ...] = (
    "airport",
    "bus",
    "metro",
    "metro_station",
    "park",
    "public_square",
    "shopping_mall",
    "street_pedestrian",
    "street_traffic",
    "tram",
)
SUPER_CLASSES: tuple[str, ...] = ("indoor", "outdoor", "transportation")
SCENE_TO_SUPER: dict[str, str] = {
    "airport": "indoor",
    "bus": "transportation",
    "metro": "transportation",
    "metro_station": "indoor",
    "park": "outdoor",
    "public_square": "outdoor",
    "shopping_mall": "indoor",
    "street_pedestrian": "outdoor",
    "street_traffic": "outdoor",
    "tram": "transportation",
}
DEVICES: tuple[str, ...] = ("a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6")
TRAIN_DEVICES: tuple[str, ...] = ("a", "b", "c", "s1", "s2", "s3")
UNSEEN_DEVICES: tuple[str, ...] = ("s4", "s5", "s6")


def super_index_map(
    scenes: tuple[str, ...] | list[str] = SCENES,
    super_classes: tuple[str, ...] | list[str] = SUPER_CLASSES,
    mapping: dict[str, str] | None = None,
) -> list[int]:
    """Index of each scene's super-class, e.g. [0, 2, 2, 0, 1, 1, 0, 1, 1, 2] for TAU."""
    mapping = SCENE_TO_SUPER if mapping is None else mapping
    return [list(super_classes).index(mapping[s]) for s in scenes]


def class_names(task: str) -> list[str]:
    """Class names of a head: 'scene' -> 10 scenes, 'super' -> 3 super-classes."""
    if task == "scene":
        return list(SCENES)
    if task == "super":
        return list(SUPER_CLASSES)
    raise ValueError(f"unknown task {task!r}: expected 'scene' or 'super'")
