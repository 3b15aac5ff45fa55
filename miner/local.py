"""Local mode: no chain, no internet. No-password wallets in a temporary folder and a dendrite that
does not look up the machine's external IP.

bittensor's `Dendrite.__init__` calls `bittensor.utils.networking.get_external_ip()`, which asks
web services for our public address; `local_dendrite` replaces that look-up with 127.0.0.1 for
the duration of the constructor only. The dendrite then reaches an axon on 127.0.0.1 (bittensor
rewrites "our own external ip" to 0.0.0.0, which Linux and macOS route to loopback).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

LOOPBACK = "127.0.0.1"


def local_wallet(root: str | Path, name: str):
    """A wallet with a fresh no-password coldkey and hotkey under `root` (never your real wallets)."""
    from bittensor_wallet import Wallet

    wallet = Wallet(name=name, hotkey="default", path=str(root))
    wallet.create_new_coldkey(n_words=12, use_password=False, overwrite=True, suppress=True)
    wallet.create_new_hotkey(n_words=12, use_password=False, overwrite=True, suppress=True)
    return wallet


@contextlib.contextmanager
def no_external_ip_lookup(ip: str = LOOPBACK) -> Iterator[None]:
    """Within the block, bittensor's external-IP look-up answers `ip` without any network call."""
    from bittensor.utils import networking

    original = networking.get_external_ip
    networking.get_external_ip = lambda: ip
    try:
        yield
    finally:
        networking.get_external_ip = original


def local_dendrite(wallet):
    import bittensor as bt

    with no_external_ip_lookup():
        return bt.Dendrite(wallet=wallet)
