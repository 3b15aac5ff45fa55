"""The fitted consensus artefact: voter weights, calibration and routing bands, versioned.

Written by `roadwork fit`, referenced from a profile's `consensus.weights` key. Loading checks the
schema version and the label set so that an artefact from another task or format is refused.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SCHEMA_VERSION = 1
LABELS = (0, 1)


class ConsensusArtefact(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = SCHEMA_VERSION
    labels: tuple[int, int] = LABELS
    weights: dict[str, float]
    """Weight per voter name; a voter missing here keeps the weight its config gives."""
    scale: float = 1.0
    """Multiplies the pooled logit."""
    bias: float = 0.0
    """Added to the scaled pooled logit; includes the shift that puts the fitted threshold at 0.5."""
    clip: float = Field(default=1e-4, gt=0, lt=0.5)
    bands: dict[str, tuple[float, float]] = Field(default_factory=dict)
    """Per level name (L0..L5): exit early when the pooled probability is outside [lo, hi]."""
    threshold_raw: float = 0.5
    """Decision threshold on the un-shifted calibrated probability (kept for the record)."""
    fitted_on: str = ""
    n_samples: int = 0
    metrics: dict[str, float] = Field(default_factory=dict)

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: tuple[int, int]) -> tuple[int, int]:
        if tuple(v) != LABELS:
            raise ValueError(f"artefact was fitted on labels {v}, this build expects {LABELS}")
        return v

    @field_validator("weights")
    @classmethod
    def _weights(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: w for k, w in v.items() if not w >= 0}
        if bad:
            raise ValueError(f"weights must be >= 0, got {bad}")
        return v

    @field_validator("bands")
    @classmethod
    def _bands(cls, v: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        for level, (lo, hi) in v.items():
            if not 0.0 <= lo <= hi <= 1.0:
                raise ValueError(f"band for {level} must satisfy 0 <= lo <= hi <= 1, got [{lo}, {hi}]")
        return v

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.model_dump(mode="json"), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> ConsensusArtefact:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"consensus artefact {str(path)!r} not found; run `roadwork fit` "
                                    "or remove `consensus.weights` from the profile")
        data = json.loads(path.read_text())
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(f"consensus artefact {str(path)!r} has schema_version {version!r}; this "
                             f"build reads {SCHEMA_VERSION}. Re-run `roadwork fit`.")
        return cls.model_validate(data)
