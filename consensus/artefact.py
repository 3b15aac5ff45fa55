"""The fitted consensus artefact: voter weights, calibration and routing bands, versioned.

Written by `roadwork fit`, referenced from a profile's `consensus.weights` key. Loading checks the
schema version and the label set so that an artefact from another task or format is refused.

An artefact holds one fitted `Pool` per range of frame sizes (by long side). A profile whose voters
all score every frame has one pool. One whose voters split the frames (`voters[].long_side`: 224-px
validator images scored whole, full-resolution frames scored by tiles) has one pool per part, each
with its own weights, calibration, threshold and bands: the two parts see different voters, and one
calibration for both would put the threshold in the wrong place for each. Schema 1 (one pool, its
fields at the top) still loads, as one pool for every frame.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cascade.types import EVERY_SIZE, LongSides, covers

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
LABELS = (0, 1)
POOL_FIELDS = ("weights", "scale", "bias", "bands", "threshold_raw", "n_samples", "metrics")


class Pool(BaseModel):
    """Weights, calibration and bands for the frames whose long side is in `long_side`."""

    model_config = ConfigDict(extra="forbid")

    long_side: LongSides = EVERY_SIZE
    """Frames this pool answers: long side >= the first and < the second (None: no limit)."""
    weights: dict[str, float]
    """Weight per voter name; a voter missing here keeps the weight its config gives."""
    scale: float = 1.0
    """Multiplies the pooled logit."""
    bias: float = 0.0
    """Added to the scaled pooled logit; includes the shift that puts the fitted threshold at 0.5."""
    bands: dict[str, tuple[float, float]] = Field(default_factory=dict)
    """Per level name (L0..L5): exit early when the pooled probability is outside [lo, hi]."""
    threshold_raw: float = 0.5
    """Decision threshold on the un-shifted calibrated probability (kept for the record)."""
    n_samples: int = 0
    metrics: dict[str, float] = Field(default_factory=dict)

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

    def describe(self) -> str:
        lo, hi = self.long_side
        return (
            "every frame"
            if (lo, hi) == EVERY_SIZE
            else f"frames with long side >= {lo} px"
            if hi is None
            else f"frames with long side {lo}-{hi - 1} px"
        )


class ConsensusArtefact(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[2] = SCHEMA_VERSION
    labels: tuple[int, int] = LABELS
    clip: float = Field(default=1e-4, gt=0, lt=0.5)
    pools: list[Pool] = Field(min_length=1)
    """One per range of frame sizes; together they cover every size once, smallest first."""
    fitted_on: str = ""
    balance: str | None = None
    """How the fit weighed its rows (consensus.fitting.BALANCE: "source", "source-label"); None: each once."""
    cut_off_margin: float = Field(default=0.0, ge=0, lt=1)
    """The MCC a pool's cut-off had to gain over 0.5 on the fit's rows to move (0: the best cut-off)."""
    n_samples: int = 0
    metrics: dict[str, float] = Field(default_factory=dict)
    """Over every fitted row, each answered by its own pool."""

    @model_validator(mode="before")
    @classmethod
    def _from_schema_1(cls, data: Any) -> Any:
        """Schema 1 kept one pool's fields at the top: read it as one pool for every frame."""
        if isinstance(data, dict) and data.get("schema_version") == 1:
            data = dict(data)
            pool = {k: data.pop(k) for k in POOL_FIELDS if k in data}
            data["pools"] = [pool]
            data["schema_version"] = SCHEMA_VERSION
            data["n_samples"], data["metrics"] = pool.get("n_samples", 0), pool.get("metrics", {})
        return data

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: tuple[int, int]) -> tuple[int, int]:
        if tuple(v) != LABELS:
            raise ValueError(f"artefact was fitted on labels {v}, this build expects {LABELS}")
        return v

    @field_validator("pools")
    @classmethod
    def _pools_tile_the_sizes(cls, v: list[Pool]) -> list[Pool]:
        edge: int | None = 0
        for pool in v:
            if edge is None or pool.long_side[0] != edge:
                raise ValueError(
                    "pools must cover every frame size once, smallest first: got long_side ranges "
                    f"{[list(p.long_side) for p in v]}"
                )
            edge = pool.long_side[1]
        if edge is not None:
            raise ValueError(f"the last pool must have no upper long_side limit, got {edge}")
        return v

    @property
    def voters(self) -> set[str]:
        return {name for pool in self.pools for name in pool.weights}

    def pool_for(self, long_side: int) -> Pool:
        return next(p for p in self.pools if covers(p.long_side, long_side))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.model_dump(mode="json"), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> ConsensusArtefact:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"consensus artefact {str(path)!r} not found; run `roadwork fit` "
                "or remove `consensus.weights` from the profile"
            )
        data = json.loads(path.read_text())
        version = data.get("schema_version")
        if version not in READABLE_VERSIONS:
            raise ValueError(
                f"consensus artefact {str(path)!r} has schema_version {version!r}; this "
                f"build reads {', '.join(map(str, READABLE_VERSIONS))}. Re-run `roadwork fit`."
            )
        return cls.model_validate(data)
