"""The roadwork object schema: five classes, what each source's box class names map to, and the
text that names each class to an open-vocabulary model.

Each source in `<data>/boxes/<source>/` names its classes in its own `classes.txt`; `map_class`
puts them on one schema (cone, barrier, sign, machinery, worker), keyed `name@source` where a name
means roadwork in one source only. Classes outside it (cars, potholes, animals...) map to None:
background. Used by `roadwork train detector`, `train boxes` and the copy-paste banks.
"""

from __future__ import annotations

SCHEMA: tuple[str, ...] = ("cone", "barrier", "sign", "machinery", "worker")
SCHEMA_MAP: dict[str, str | None] = {
    # cones
    "cone": "cone",
    "road_cone": "cone",
    "road-cone": "cone",
    "traffic_cone": "cone",
    "isolation-pile": "barrier",
    # barriers / barricades / drums
    "barricade": "barrier",
    "barrier": "barrier",
    "barrel": "barrier",
    "drum": "barrier",
    # signs and boards placed for roadwork
    "road_works_sign_board": "sign",
    "prepare_to_stop_board": "sign",
    "speed_board": "sign",
    "roadwork_sign": "sign",
    # machinery and workers
    "excavator": "machinery",
    "machinery": "machinery",
    "worker": "worker",
    # in the night-roadwork source people on the road are road workers
    "person@pp_nightwork": "worker",
    # the ROADWork dataset's instance categories (CMU, COCO-style; `--coco`); police, vehicles
    # that are not work vehicles, fences and surfaces stay background
    "tubular marker": "cone",
    "vertical panel": "barrier",
    "arrow board": "sign",
    "temporary traffic control sign": "sign",
    "temporary traffic control message board": "sign",
    "work equipment": "machinery",
    "work vehicle": "machinery",
}


def map_class(name: str, source: str) -> str | None:
    """Schema name for a source's class name, or None to drop it (becomes background)."""
    key = name.strip().lower()
    return SCHEMA_MAP.get(f"{key}@{source}", SCHEMA_MAP.get(key))


SCHEMA_PROMPTS: dict[str, str] = {
    "cone": "traffic cone",
    "barrier": "road barrier",
    "sign": "roadwork sign",
    "machinery": "construction machinery",
    "worker": "road worker in a safety vest",
}
"""The text a released YOLOE checkpoint embeds for each schema class before fine-tuning starts."""
