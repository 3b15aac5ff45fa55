"""Who may query the miner (blacklist) and in which order (priority), decided on a metagraph snapshot.

Pure and total: `CallerPolicy.check(hotkey)` never raises, whatever the caller sent (no hotkey,
a non-string, an unknown key) and whatever state the snapshot is in. The snapshot is replaced
atomically by the background metagraph sync (`miner/chain.py`); decisions read whichever
snapshot is current.

Unlike bittensor-subnet-template's `Miner.blacklist`, which calls `metagraph.hotkeys.index()`
before checking registration (an unknown caller raises), an unknown hotkey is a clean refusal.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from miner.config import PolicyConfig


@dataclass(frozen=True)
class MetagraphSnapshot:
    """The three things the policy needs from a metagraph, copied out of it."""

    uids: dict[str, int] = field(default_factory=dict)
    stake: tuple[float, ...] = ()
    validator_permit: tuple[bool, ...] = ()
    block: int | None = None

    @classmethod
    def from_metagraph(cls, metagraph: Any) -> MetagraphSnapshot:
        """Copy from a bittensor Metagraph (or anything with hotkeys, S, validator_permit)."""
        hotkeys = list(metagraph.hotkeys)
        stake = [float(s) for s in _as_list(metagraph.S)]
        permit = [bool(p) for p in _as_list(metagraph.validator_permit)]
        block = getattr(metagraph, "block", None)
        return cls.build(hotkeys, stake, permit, block=None if block is None else int(_as_scalar(block)))

    @classmethod
    def build(
        cls, hotkeys: Sequence[str], stake: Sequence[float], permit: Sequence[bool], block: int | None = None
    ) -> MetagraphSnapshot:
        if not len(hotkeys) == len(stake) == len(permit):
            raise ValueError(
                f"metagraph arrays differ in length: {len(hotkeys)} hotkeys, {len(stake)} stakes, {len(permit)} permits"
            )
        return cls(
            {hk: uid for uid, hk in enumerate(hotkeys)},
            tuple(float(s) for s in stake),
            tuple(bool(p) for p in permit),
            block,
        )

    def __len__(self) -> int:
        return len(self.uids)


def _as_list(x: Any) -> list:
    return x.tolist() if hasattr(x, "tolist") else list(x)


def _as_scalar(x: Any) -> Any:
    return x.item() if hasattr(x, "item") else x


@dataclass(frozen=True)
class Decision:
    refused: bool
    reason: str
    """Short label (Prometheus `reason`): ok, no_hotkey, unregistered, no_validator_permit, low_stake."""
    detail: str
    """Words for the log and for the caller's 403 message."""
    priority: float = 0.0


class CallerPolicy:
    def __init__(self, config: PolicyConfig, snapshot: MetagraphSnapshot | None = None) -> None:
        self.config = config
        self._snapshot = snapshot or MetagraphSnapshot()
        self._lock = threading.Lock()

    @property
    def snapshot(self) -> MetagraphSnapshot:
        with self._lock:
            return self._snapshot

    def update(self, snapshot: MetagraphSnapshot) -> None:
        with self._lock:
            self._snapshot = snapshot

    def check(self, hotkey: object) -> Decision:
        """Blacklist decision and priority for one caller's hotkey."""
        if not isinstance(hotkey, str) or not hotkey:
            return Decision(True, "no_hotkey", "request carries no dendrite hotkey")
        snap = self.snapshot
        uid = snap.uids.get(hotkey)
        if uid is None:
            if self.config.allow_unregistered:
                return Decision(False, "ok", f"{hotkey} unregistered, allowed by policy.allow_unregistered")
            return Decision(
                True, "unregistered", f"hotkey {hotkey} is not registered in the metagraph ({len(snap)} neurons)"
            )
        stake = snap.stake[uid] if uid < len(snap.stake) else 0.0
        stake = stake if math.isfinite(stake) else 0.0
        permit = snap.validator_permit[uid] if uid < len(snap.validator_permit) else False
        if self.config.require_validator_permit and not permit:
            return Decision(
                True,
                "no_validator_permit",
                f"uid {uid} ({hotkey}) holds no validator permit (miner.policy.require_validator_permit)",
                stake,
            )
        if stake < self.config.min_stake:
            return Decision(
                True,
                "low_stake",
                f"uid {uid} stake {stake:.1f} < miner.policy.min_stake={self.config.min_stake:g}",
                stake,
            )
        return Decision(False, "ok", f"uid {uid}, stake {stake:.1f}", stake)

    def priority(self, hotkey: object) -> float:
        """The caller's stake; 0 for anyone we do not know."""
        return self.check(hotkey).priority
