"""What sending frames to a device worker costs (runtime.process_per_device), by frame size and
transport (runtime.frame_transport).

A micro-batch crosses to its GPU's worker process pickled, once per voter: with 17 GPU voters
each frame crosses 17 times. At 224 px that is ~150 KB a crossing; a 1920x1080 frame, which
full-resolution validators have sent since May 2026, is 6.2 MB. This times the round trip of
`DeviceProcess.call(len, frames)`: the frames pickled, piped to a worker that holds no model,
unpickled there, and a number sent back. That is the whole transfer cost with no model work.
`shared-memory` times the same with the pixels in a shared-memory block (detectors/frame_transport.py):
the block made and filled, its shapes piped, the frames copied out in the worker, the block unlinked.

    python benchmarks/ipc_frames.py --out benchmarks/results/ipc_frames_cpu.json

The worker time the GPU bench reports (`worker_ms_per_image`) starts after the unpickling, so
this cost is not in it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cascade.types import Frame
from detectors.device_process import DeviceProcess
from detectors.frame_transport import FrameRef, frames_in, shared_batch
from roadwork.bench.utilisation import machine

SHAPES = {"224x224": (224, 224), "1280x720": (1280, 720), "1920x1080": (1920, 1080)}
BATCHES = (1, 8, 16)


def count_shared(block: str, refs: list[FrameRef]) -> int:
    """In the worker: the frames of a shared batch, taken out as a voter's predict would get them."""
    return len(frames_in(block, refs))


def send(proc: DeviceProcess, transport: str, frames: list[Frame]) -> int:
    if transport == "pipe":
        return proc.call(len, frames)
    with shared_batch(frames) as (block, refs):
        return proc.call(count_shared, block, refs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    proc = DeviceProcess("cpu", [], Path("."), restart=False)  # a worker with no model: transfer only
    result: dict = {"what": __doc__.split("\n\n")[0], "machine": machine(), "repeats": args.repeats, "runs": {}}
    try:
        proc.call(len, [])  # the worker is up and its first call paid
        for name, (w, h) in SHAPES.items():
            for batch in BATCHES:
                frames = [Frame(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), source="ipc") for _ in range(batch)]
                for transport in ("pipe", "shared-memory"):
                    times = []
                    for _ in range(args.repeats):
                        t0 = time.perf_counter()
                        assert send(proc, transport, frames) == batch
                        times.append(time.perf_counter() - t0)
                    ms = 1000 * statistics.median(times)
                    result["runs"][f"{name}/{batch}/{transport}"] = {
                        "frame_mb": round(w * h * 3 / 1e6, 2),
                        "batch": batch,
                        "transport": transport,
                        "median_ms_per_call": round(ms, 2),
                        "ms_per_frame": round(ms / batch, 2),
                        "ms_per_frame_for_17_voters": round(17 * ms / batch, 1),
                    }
                    print(f"{name} x{batch} {transport}: {ms:.1f} ms a call, {ms / batch:.2f} ms a frame", flush=True)
    finally:
        proc.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
