"""Where each voter's weights come from: one list for `roadwork fetch-weights`, built from the
`weights` form of each kind's registry entry, plus the files this project trains (the kind's
`artefacts` form, detectors/artefacts.py), so no kind is described twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cascade.config import CascadeConfig, VoterConfig


@dataclass
class WeightItem:
    voter: str
    kind: str
    source: str
    """hf (huggingface hub id), ultralytics (asset name), rfdetr (checkpoint), trained, bundled."""
    id: str
    target: str = ""
    """Where the file goes (ultralytics / rfdetr / trained); empty for the hub cache."""
    present: bool | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Where:
    """What a kind's `weights` form may need beyond its own entry."""

    resolve: Callable[[str], Path]
    """A path as the profile writes it -> where it is (relative to the profile's folder)."""
    served: dict[str, str] = field(default_factory=dict)
    """served_model_name -> hub id, from the launch specs under placement.vllm_servers."""


def is_path(model: str) -> bool:
    """`params.model` written as a path (./, ../, / or ~): a folder of ours, not a hub id."""
    return model.startswith((".", "/", "~"))


def hub_model(v: VoterConfig, where: Where) -> list[WeightItem]:
    """A transformers checkpoint named by `params.model` (a hub id; none for random_init or a folder
    of ours, which is a trained artefact)."""
    model = v.params.get("model")
    return [WeightItem(v.name, v.kind, "hf", str(model))] if model and not is_path(str(model)) else []


def bundled(what: str) -> Callable[[VoterConfig, Where], list[WeightItem]]:
    """A form for a kind whose models ship inside a wheel."""

    def form(v: VoterConfig, where: Where) -> list[WeightItem]:
        return [WeightItem(v.name, v.kind, "bundled", what, present=True)]

    return form


def profile_weights(cfg: CascadeConfig, served: dict[str, str] | None = None) -> list[WeightItem]:
    """What each enabled voter of the profile needs, in profile order: released checkpoints (the
    kind's `weights` form), then the files this project trains for it (its `artefacts` form)."""
    from detectors.artefacts import Artefact
    from detectors.registry import artefacts_form, weights_form

    where = Where(resolve=cfg.resolve, served=served or {})
    items: list[WeightItem] = []
    for v in cfg.voters:
        if not v.enabled:
            continue
        form = weights_form(v.kind)
        items += form(v, where) if form is not None else []
        made = artefacts_form(v.kind)
        trained: list[Artefact] = made(v, lambda p: str(p)) if made is not None else []
        for a in trained:
            path = cfg.resolve(a.path)
            items.append(WeightItem(v.name, v.kind, "trained", str(a.path), str(path), path.is_file(), a.made_by))
    return items
