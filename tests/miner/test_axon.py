"""Round trips through a real bittensor axon and dendrite on 127.0.0.1 (no chain, no internet)."""

import asyncio
import inspect
import typing

import pytest

pytest.importorskip("bittensor")
pytestmark = pytest.mark.filterwarnings("ignore:Accessing the 'model_fields' attribute:DeprecationWarning")

from miner.config import MinerConfig  # noqa: E402
from miner.protocol import ExtendedImageSynapse, ImageSynapse  # noqa: E402
from tests.conftest import FakeVoter  # noqa: E402
from tests.miner.helpers import encode, fake_cascade, local_miner, miner_config  # noqa: E402

IMAGE = encode(size=(96, 96))


def query(dendrite, axon, synapses, timeout=9.0):
    async def go():
        try:
            return await asyncio.gather(
                *(dendrite(axons=[axon.info()], synapse=s, deserialize=False, timeout=timeout) for s in synapses)
            )
        finally:
            await dendrite.aclose_session()

    return [r[0] for r in asyncio.run(go())]


def test_handler_signatures_are_what_attach_demands():
    from miner.axon import make_handlers
    from miner.policy import CallerPolicy
    from miner.service import MinerService
    from monitoring.metrics import MinerMetrics

    cfg = MinerConfig()
    fwd, bl, pr = make_handlers(
        MinerService(fake_cascade([FakeVoter("a", "L0")]), cfg), CallerPolicy(cfg.policy), MinerMetrics(), ImageSynapse
    )
    param = [inspect.Parameter("synapse", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=ImageSynapse)]
    assert inspect.signature(bl) == inspect.Signature(param, return_annotation=typing.Tuple[bool, str])  # noqa: UP006
    assert inspect.signature(pr) == inspect.Signature(param, return_annotation=float)
    assert inspect.signature(fwd).return_annotation is ImageSynapse


def test_round_trip_answers_registered_validators_and_refuses_strangers(tmp_path):
    cascade = fake_cascade([FakeVoter("l0", "L0", 0.83)])
    cfg = miner_config(model_url="https://huggingface.co/example/roadwork")
    with local_miner(cascade, cfg, tmp_path) as m:
        plain, extended, bad, again = query(
            m.dendrite,
            m.axon,
            [
                ImageSynapse(image=IMAGE),
                ExtendedImageSynapse(image=IMAGE),
                ImageSynapse(image="AAAA not an image"),
                ImageSynapse(image=IMAGE),
            ],
        )
        (refused,) = query(m.stranger, m.axon, [ImageSynapse(image=IMAGE)])
        refusals = m.metrics.value("roadwork_refused_total", {"reason": "unregistered"})
    cascade.close()
    # a registered validator gets our probability on both routes
    assert plain.dendrite.status_code == 200 and plain.prediction == pytest.approx(0.83)
    assert extended.prediction == pytest.approx(0.83)
    assert extended.model_url == cfg.model_url and "l0" in extended.explanation
    # bad input: a clean -1, and the miner keeps serving
    assert bad.dendrite.status_code == 200 and bad.prediction == -1.0
    assert again.prediction == pytest.approx(0.83)
    # an unregistered hotkey is refused with 403, never a 500
    assert refused.dendrite.status_code == 403 and refused.prediction == -1.0
    assert refusals == 1


@pytest.mark.slow
def test_round_trip_with_the_embedded_default_cascade(tmp_path):
    from cascade.pipeline import Cascade
    from miner.profile import load_profile
    from tests.conftest import REPO
    from training.sample import make_sample

    sample = make_sample(tmp_path / "sample", 4, 0)
    images = sorted((sample / "images").glob("*")) or sorted(sample.rglob("*.jpg"))
    import base64

    payloads = [base64.b64encode(p.read_bytes()).decode() for p in images[:4]]
    cfg = load_profile(REPO / "configs" / "cpu.yaml")
    with Cascade.from_config(cfg) as cascade, local_miner(cascade, cfg.miner, tmp_path) as m:
        answers = query(m.dendrite, m.axon, [ImageSynapse(image=p) for p in payloads])
    assert len(answers) == 4
    for a in answers:
        assert a.dendrite.status_code == 200 and 0.0 <= a.prediction <= 1.0
        assert float(a.dendrite.process_time) < 9.0


def test_oversized_body_is_refused_before_parsing_and_answers_do_not_echo_the_image(tmp_path):
    import time

    cascade = fake_cascade([FakeVoter("l0", "L0", 0.7)])
    cfg = miner_config(decode={"max_bytes": 1_000_000})
    with local_miner(cascade, cfg, tmp_path) as m:
        # a legitimate answer carries the prediction but not the 96x96 image it was asked about
        (ok,) = query(m.dendrite, m.axon, [ImageSynapse(image=IMAGE)])
        # a 12 MB body (a 1 MB limit) is answered 413 from its header alone, small and fast:
        # the server answers before the body is sent (a caller that goes on sending gets a reset)
        import socket

        t0 = time.monotonic()
        with socket.create_connection(("127.0.0.1", m.axon.port), timeout=10) as sock:
            sock.sendall(
                b"POST /ImageSynapse HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: 12000000\r\n\r\n" + b'{"image": "' + b"A" * 65536
            )
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        seconds = time.monotonic() - t0
        refused = m.metrics.value("roadwork_refused_total", {"reason": "body_too_large"})
    cascade.close()
    assert ok.prediction == pytest.approx(0.7) and ok.image == ""
    assert reply.startswith(b"HTTP/1.1 413") and len(reply) < 1000 and b"miner.decode.max_bytes" in reply
    assert refused == 1 and seconds < 5
