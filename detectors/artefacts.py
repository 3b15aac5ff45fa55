"""Files a profile needs that this project makes, each with the command that makes it.

Trained heads, fine-tuned networks and detector checkpoints come from `roadwork train ...`, the
fitted consensus from `roadwork fit`. Each voter kind says which of its params name such a file
(the `artefacts` form of its registry entry); `missing_artefacts` lists every one that is not on
disk, one line per file, before any model is built: `refuse_missing` is what `Cascade.from_config`,
`eval --ray` and `roadwork plan` refuse such a profile with, so a half-made profile fails at once, never after its
first models have taken a GPU. (Released checkpoints that `roadwork fetch-weights` fetches are
checked by that command.)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cascade.config import CascadeConfig, VoterConfig


@dataclass(frozen=True)
class Artefact:
    key: str
    """Where the profile names it, relative to the voter entry (`params.head`)."""
    path: Path
    """As the profile writes it (relative to the profile's folder unless absolute)."""
    made_by: str
    """The command that writes it."""


Shown = Callable[[Path], str]
"""How a path is printed in a command: relative to where the command runs."""


def _voter_artefacts(v: VoterConfig, shown: Shown) -> list[Artefact]:
    from detectors.registry import artefacts_form

    form = artefacts_form(v.kind)
    return form(v, shown) if form is not None else []


def missing_artefacts(cfg: CascadeConfig) -> list[str]:
    """One line per project-made file an enabled voter (or the consensus) names that is not on
    disk: `voters.3.params.head: ../models/x.npz is missing; make it with `roadwork train head ...``."""

    def shown(path: Path) -> str:
        return os.path.relpath(cfg.resolve(path))

    lines = []
    for i, v in enumerate(cfg.voters):
        if not v.enabled:
            continue
        for a in _voter_artefacts(v, shown):
            if not cfg.resolve(a.path).is_file():
                lines.append(f"voters.{i}.{a.key} ({v.name}): {a.path} is missing; make it with `{a.made_by}`")
    weights = cfg.consensus.weights
    if weights is not None and not cfg.resolve(weights).is_file():
        lines.append(
            f"consensus.weights: {weights} is missing; make it with `roadwork fit --profile PROFILE "
            f"--run RUN --out {shown(weights)}` on a labelled run of this profile's voters (`roadwork eval`), "
            "or leave consensus.weights out to pool with the voters' own weights"
        )
    return lines


def refuse_missing(cfg: CascadeConfig) -> None:
    """FileNotFoundError with every missing file, one line each; nothing when all are there."""
    missing = missing_artefacts(cfg)
    if missing:
        raise FileNotFoundError(
            f"profile {cfg.name!r} names {len(missing)} file(s) that are not there:\n  " + "\n  ".join(missing)
        )
