"""Two hotkeys, one cascade service (miner/shared.py, Ray Serve on a local cluster): the same image
sent to both at once runs the cascade once; with the service gone both answer -1, and they answer
again when it is back."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
PROFILE = REPO / "configs" / "cpu.yaml"


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.serve")
    pytest.importorskip("bittensor")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    from ray import serve

    serve.shutdown()
    ray.shutdown()


def ask_both(a, b, image: str):
    from miner.protocol import ImageSynapse

    async def one(miner):
        try:
            got = await miner.dendrite(
                axons=[miner.axon.info()], synapse=ImageSynapse(image=image), deserialize=False, timeout=9
            )
            return got[0]
        finally:
            await miner.dendrite.aclose_session()

    async def both():
        return await asyncio.gather(one(a), one(b))

    return asyncio.run(both())


def test_two_hotkeys_share_one_cascade_and_survive_its_restart(tmp_path, cluster) -> None:
    from ray import serve

    from miner.profile import load_profile
    from miner.shared import APP, SharedCascade, deploy
    from tests.miner.helpers import encode, local_miner, miner_config

    service = deploy(str(PROFILE), replicas=1, cpus_per_replica=1.0, cache_s=30)
    profile = load_profile(PROFILE)
    cfg = miner_config()
    with (
        local_miner(SharedCascade(profile), cfg, tmp_path / "a") as a,
        local_miner(SharedCascade(profile), cfg, tmp_path / "b") as b,
    ):
        assert a.axon.info().hotkey != b.axon.info().hotkey  # two miners, two wallets
        # the same challenge to both at once: one cascade run, the same answer
        ra, rb = ask_both(a, b, encode(size=(224, 224)))
        assert ra.dendrite.status_code == rb.dendrite.status_code == 200
        assert 0.0 <= ra.prediction <= 1.0 and ra.prediction == rb.prediction
        counts = service.stats.remote().result()
        assert counts["runs"] == 1 and counts["coalesced"] + counts["cached"] == 1, counts
        # the service goes away: both still answer, with the miner's "no answer"
        serve.delete(APP)
        gone = ask_both(a, b, encode(size=(200, 200)))
        assert [r.prediction for r in gone] == [-1.0, -1.0]
        assert a.metrics.errors.labels(kind="cascade")._value.get() >= 1
        # and when it is back they answer again
        deploy(str(PROFILE), replicas=1, cpus_per_replica=1.0, cache_s=30)
        back = ask_both(a, b, encode(size=(180, 180)))
        assert all(0.0 <= r.prediction <= 1.0 for r in back)


def test_a_front_counts_the_votes_the_service_cast() -> None:
    # no cluster needed: the service's handle is stood in for; the front's observers see every vote
    import numpy as np

    from cascade.budget import Deadline
    from cascade.types import AbstainCause, Frame, Level, Verdict, Vote
    from miner.profile import load_profile
    from miner.shared import SharedCascade

    skipped = Vote.abstain("l0_tiles", "L0", "frame under 448 px", cause=AbstainCause.NO_EVIDENCE)
    verdict = Verdict(prob=0.8, exit_level=Level.L0, votes=(Vote("l0_head", "L0", 0.8), skipped))

    class Remote:
        async def _answer(self, *args):
            return verdict

        def remote(self, *args):
            return self._answer(*args)

    class Handle:
        run = Remote()

    seen: list = []

    class Observer:
        def on_start(self, frame, deadline_s):
            seen.append("start")

        def on_vote(self, vote):
            seen.append(vote.voter)

        def on_verdict(self, v):
            seen.append(v.prob)

    shared = SharedCascade(load_profile(PROFILE))
    shared._handle = Handle()
    frame = Frame(np.zeros((8, 8, 3), np.uint8), source="t")
    got = asyncio.run(shared.run(frame, Deadline.after(5.0), observer=Observer()))
    assert got is verdict and seen == ["start", "l0_head", "l0_tiles", 0.8]
