"""Load test: K concurrent validator queries on loopback for D seconds through the real axon/dendrite.

    python benchmarks/miner_load.py --concurrency 50 --duration 120 --out runs/miner/load.json

Each of K workers sends validator-transformed JPEG challenges back to back (timeout 9 s) to the
miner built from --config. Reports answered / unanswered / timeouts, latency percentiles as the
validator sees them, throughput and the miner's own error counters. Exit code 1 if any query
went unanswered.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from pathlib import Path

from miner_common import load_profile, payloads, percentiles, quiet


async def drive(rig, pool: list[tuple[int, str]], concurrency: int, duration: float) -> list[dict]:
    end = time.monotonic() + duration
    rows: list[dict] = []

    async def worker(w: int) -> None:
        i = w
        while time.monotonic() < end:
            label, payload = pool[i % len(pool)]
            i += concurrency
            t_sent = time.monotonic()
            res = await rig.query(payload)
            rows.append({"worker": w, "sent": t_sent, "latency_s": res.latency_s, "status": res.status_code,
                         "prediction": res.prediction, "answered": res.answered, "timed_out": res.timed_out,
                         "label": label})
    try:
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
    finally:
        await rig.aclose()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=Path("configs/cpu.yaml"))
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--split", default=None)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--duration", type=float, default=120.0, help="seconds")
    ap.add_argument("--images", type=int, default=40, help="distinct challenges, sent round robin")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "runs")) / "miner_load.json")
    args = ap.parse_args()
    quiet()
    from cascade.pipeline import Cascade
    from miner.rig import LocalRig

    cfg = load_profile(args.config)
    pool = payloads(args.data, args.split, args.images)
    t0 = time.time()
    with Cascade.from_config(cfg) as cascade, LocalRig(cascade, cfg.miner) as rig:
        rows = asyncio.run(drive(rig, pool, args.concurrency, args.duration))
        errors = {s.labels["kind"]: int(s.value) for m in rig.metrics.errors.collect()
                  for s in m.samples if s.name.endswith("_total")}
    wall = time.time() - t0
    lat = [r["latency_s"] * 1000 for r in rows]
    unanswered = [r for r in rows if not r["answered"]]
    result = {
        "concurrency": args.concurrency, "duration_s": args.duration, "wall_s": round(wall, 1),
        "queries": len(rows), "answered": len(rows) - len(unanswered), "unanswered": len(unanswered),
        "timeouts": sum(r["timed_out"] for r in rows),
        "status_codes": {str(c): sum(r["status"] == c for r in rows) for c in sorted({r["status"] for r in rows})},
        "latency_ms": percentiles(lat), "throughput_qps": round(len(rows) / args.duration, 2),
        "miner_errors": errors,
        "accuracy_answered": (sum(round(r["prediction"]) == r["label"] for r in rows if r["answered"])
                              / max(1, len(rows) - len(unanswered))),
        "miner_config": cfg.miner.model_dump(include={"deadline_ms", "max_concurrent", "max_queue", "decode_workers"}),
        "runtime": cfg.runtime.model_dump(include={"workers", "torch_threads"}),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("queries", "answered", "unanswered", "timeouts", "latency_ms",
                                             "throughput_qps")}))
    raise SystemExit(1 if unanswered else 0)


if __name__ == "__main__":
    main()
