"""Two hotkeys: each with its own cascade, against both on one shared cascade service, timed.

    PYTHONPATH=. python benchmarks/shared_service_speed.py --out benchmarks/results/shared_service_speed_cpu.json

Both miners' services (`MinerService`, the code behind each axon) answer the same challenges at
once, as when a validator sends one challenge to several of an operator's miners: `distinct`
sends each miner its own images, `same` sends both the same images (the shared service runs each
once). Separate: two cascades of the profile in this process. Shared: `roadwork cascade-service`'s
deployments on a local Ray cluster, one replica. Wall time per phase, after one warm-up round.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cascade.pipeline import Cascade
from miner.config import MinerConfig
from miner.profile import load_profile
from miner.service import MinerService


def images(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)).save(buf, format="JPEG")
        out.append(base64.b64encode(buf.getvalue()).decode())
    return out


async def phase(a: MinerService, b: MinerService, for_a: list[str], for_b: list[str]) -> float:
    t0 = time.monotonic()
    answers = await asyncio.gather(*(a.answer(x) for x in for_a), *(b.answer(x) for x in for_b))
    assert all(0.0 <= r.prediction <= 1.0 for r in answers), [r.reason for r in answers]
    return time.monotonic() - t0


def measure(a: MinerService, b: MinerService, n: int) -> dict[str, float]:
    asyncio.run(phase(a, b, images(2, 99), images(2, 98)))  # warm-up
    distinct = asyncio.run(phase(a, b, images(n, 1), images(n, 2)))
    same = images(n, 3)
    return {"distinct_s": round(distinct, 2), "same_s": round(asyncio.run(phase(a, b, same, same)), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=Path("configs/cpu.yaml"))
    ap.add_argument("--images", type=int, default=24, help="Challenges per miner per phase.")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    profile = load_profile(args.config)
    miner = MinerConfig.model_validate({"max_concurrent": 4, "health": {"port": 0}})
    separate = [MinerService(Cascade.from_config(profile), miner) for _ in range(2)]
    result = {"separate": measure(*separate, args.images)}
    for s in separate:
        s.close()
        s.cascade.close()

    import ray

    from miner.shared import SharedCascade, deploy

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    service = deploy(str(args.config.resolve()), replicas=1, cpus_per_replica=1.0, cache_s=30)
    shared = [MinerService(SharedCascade(profile), miner) for _ in range(2)]
    result["shared"] = measure(*shared, args.images)
    result["shared"]["service_counts"] = service.stats.remote().result()
    n = 2 * args.images
    out = {
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(), "processor": platform.machine()},
        "profile": profile.name,
        "challenges_per_phase": n,
        **result,
        "images_per_s": {
            f"{k} {p}": round(n / v[f"{p}_s"], 2) for k, v in result.items() for p in ("distinct", "same")
        },
        "shared_over_separate": {
            p: round(result["separate"][f"{p}_s"] / result["shared"][f"{p}_s"], 2) for p in ("distinct", "same")
        },
    }
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
