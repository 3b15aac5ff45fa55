"""Load test: K concurrent validator queries on loopback for D seconds through the real axon/dendrite.

    python benchmarks/miner_load.py --concurrency 50 --duration 120 --out runs/miner/load.json

Each of K workers sends validator-transformed JPEG challenges back to back (timeout 9 s) to the
miner built from --config. Reports answered / unanswered / timeouts, latency percentiles as the
validator sees them, throughput and the miner's own error counters. Exit code 1 if any query
went unanswered.

`--flood N --flood-mb M` adds N callers that post M-MB bodies to the axon's port back to back
(loopback only, for the same duration), as a payload flood would: the legitimate queries'
latency under that flood is the figure to watch (oversized bodies are refused before parsing).
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
            rows.append(
                {
                    "worker": w,
                    "sent": t_sent,
                    "latency_s": res.latency_s,
                    "status": res.status_code,
                    "prediction": res.prediction,
                    "answered": res.answered,
                    "timed_out": res.timed_out,
                    "label": label,
                }
            )

    try:
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
    finally:
        await rig.aclose()
    return rows


async def flood(port: int, callers: int, megabytes: float, duration: float) -> dict:
    """`callers` loops posting an oversized body to 127.0.0.1:port until `duration` ends."""
    end = time.monotonic() + duration
    size = int(megabytes * 1_000_000)
    head = (
        f"POST /ImageSynapse HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {size}\r\n\r\n"
    ).encode()
    chunk = b"A" * (1 << 20)
    counts = {"sent": 0, "status_413": 0, "reset_while_sending": 0, "other": 0, "reply_bytes_max": 0}

    async def caller() -> None:
        while time.monotonic() < end:
            counts["sent"] += 1
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(head)
                try:
                    for _ in range(size // len(chunk)):
                        writer.write(chunk)
                        await writer.drain()
                except (ConnectionError, OSError):
                    pass  # refused from the header: the miner closed the connection
                reply = await asyncio.wait_for(reader.read(), timeout=10)
                writer.close()
                counts["reply_bytes_max"] = max(counts["reply_bytes_max"], len(reply))
                counts["status_413" if reply.startswith(b"HTTP/1.1 413") else "other"] += 1
            except ConnectionError:  # the 413 came and the socket closed while we were still sending
                counts["reset_while_sending"] += 1
            except (TimeoutError, OSError):
                counts["other"] += 1

    await asyncio.gather(*(caller() for _ in range(callers)))
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=Path("configs/cpu.yaml"))
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--split", default=None)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--duration", type=float, default=120.0, help="seconds")
    ap.add_argument("--images", type=int, default=40, help="distinct challenges, sent round robin")
    ap.add_argument("--flood", type=int, default=0, help="callers posting oversized bodies at the same time")
    ap.add_argument("--flood-mb", type=float, default=40.0, help="size of each flood body, MB")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "runs")) / "miner_load.json")
    args = ap.parse_args()
    quiet()
    from cascade.pipeline import Cascade
    from miner.rig import LocalRig

    cfg = load_profile(args.config)
    pool = payloads(args.data, args.split, args.images)
    t0 = time.time()
    flood_counts = None
    with Cascade.from_config(cfg) as cascade, LocalRig(cascade, cfg.miner) as rig:

        async def both() -> list[dict]:
            nonlocal flood_counts
            jobs = [drive(rig, pool, args.concurrency, args.duration)]
            if args.flood:
                jobs.append(flood(rig.axon.port, args.flood, args.flood_mb, args.duration))
            out = await asyncio.gather(*jobs)
            flood_counts = out[1] if args.flood else None
            return out[0]

        rows = asyncio.run(both())
        errors = {
            s.labels["kind"]: int(s.value)
            for m in rig.metrics.errors.collect()
            for s in m.samples
            if s.name.endswith("_total")
        }
    wall = time.time() - t0
    lat = [r["latency_s"] * 1000 for r in rows]
    unanswered = [r for r in rows if not r["answered"]]
    result = {
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "wall_s": round(wall, 1),
        "queries": len(rows),
        "answered": len(rows) - len(unanswered),
        "unanswered": len(unanswered),
        "timeouts": sum(r["timed_out"] for r in rows),
        "status_codes": {str(c): sum(r["status"] == c for r in rows) for c in sorted({r["status"] for r in rows})},
        "latency_ms": percentiles(lat),
        "throughput_qps": round(len(rows) / args.duration, 2),
        "miner_errors": errors,
        "flood": None if not args.flood else {"callers": args.flood, "mb": args.flood_mb, **flood_counts},
        "accuracy_answered": (
            sum(round(r["prediction"]) == r["label"] for r in rows if r["answered"])
            / max(1, len(rows) - len(unanswered))
        ),
        "miner_config": cfg.miner.model_dump(include={"deadline_ms", "max_concurrent", "max_queue", "decode_workers"}),
        "runtime": cfg.runtime.model_dump(include={"workers", "torch_threads"}),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        json.dumps(
            {k: result[k] for k in ("queries", "answered", "unanswered", "timeouts", "latency_ms", "throughput_qps")}
        )
    )
    raise SystemExit(1 if unanswered else 0)


if __name__ == "__main__":
    main()
