"""Adapters by name, imported lazily: torch or transformers load only for the models you pick.

Each entry maps a config `kind` to "module:Class"; the class must subclass
`detectors.base.Detector` and implement `from_config(cfg, base_dir)`. To add a model, write one
adapter file and add one line here.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from cascade.config import VoterConfig
from detectors.base import Detector

REGISTRY: dict[str, str] = {
    "backbone-head": "detectors.backbone_head:BackboneHead",
}


class UnknownDetectorError(KeyError):
    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


def resolve(kind: str) -> type[Detector]:
    try:
        target = REGISTRY[kind]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise UnknownDetectorError(f"unknown voter kind {kind!r}; known kinds: {known}. "
                                   "Fix `voters[].kind` in the profile.") from None
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, Detector)):
        raise TypeError(f"registry entry {kind!r} -> {target} is not a Detector subclass")
    return cls


def build(cfg: VoterConfig, base_dir: Path) -> Detector:
    return resolve(cfg.kind).from_config(cfg, base_dir)
