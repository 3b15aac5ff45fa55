"""Sample a running `roadwork bench --gpu` with py-spy during one stage, and summarise per process.

Usage (on the GPU machine, beside a bench writing its checkpoint JSON to BENCH_JSON):

    python benchmarks/spy_during.py --pid BENCH_PID --json BENCH_JSON --after "concurrency 64" \
        --seconds 15 --out runs/spy_2gpu

It waits until the bench's checkpoint says stage AFTER (the next stage has begun), records
`py-spy record --subprocesses --threads --nonblocking --format raw` for SECONDS (the main process
and every device worker), and writes OUT.txt (raw stacks) and OUT.json: for each process and
thread, the share of samples in which it was on the CPU (not idle), and the innermost frames
that took them. A worker thread near 100 % active runs its calls back to back: it is the limit.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def wait_for_stage(path: Path, stage: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if json.loads(path.read_text()).get("stage") == stage:
                return
        except (OSError, ValueError):
            pass  # not written yet, or caught mid-write
        time.sleep(0.2)
    raise SystemExit(f"stage {stage!r} not reached in {path} within {timeout_s:.0f} s")


def ours(frame: str) -> bool:
    m = re.search(r"\((.*?):\d+\)$", frame)
    return (
        bool(m)
        and "site-packages" not in m.group(1)
        and not m.group(1).startswith("<")
        and (not m.group(1).startswith("/") or m.group(1).startswith(str(REPO)))
    )


def summarise(raw: Path, rate: int, seconds: float, top: int = 15) -> dict:
    """Per process and thread: active share and the innermost frames (all, and of this repo)."""
    procs: dict[str, dict] = defaultdict(lambda: {"threads": defaultdict(int), "inner": Counter(), "ours": Counter()})
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        procs_chain = [f for f in frames if f.startswith("process ")]  # parent;child;...: the last one sampled
        proc = procs_chain[-1] if procs_chain else "process ?"
        thread = next((f for f in frames if f.startswith("thread ")), "thread ?")
        code = [f for f in frames if not f.startswith(("process ", "thread "))]
        p = procs[proc[:90]]
        p["threads"][thread] += int(count)
        if code:
            p["inner"][code[-1]] += int(count)
            mine = [f for f in code if ours(f)]
            if mine:
                p["ours"][mine[-1]] += int(count)
    expected = rate * seconds
    out = {}
    for name, p in procs.items():
        total = sum(p["threads"].values())
        out[name] = {
            "samples": total,
            "active_cores": round(total / expected, 2),
            "threads_active_share": {
                t: round(n / expected, 3) for t, n in sorted(p["threads"].items(), key=lambda kv: -kv[1])[:8]
            },
            "innermost": {f: round(n / total, 3) for f, n in p["inner"].most_common(top)},
            "innermost_ours": {f: round(n / total, 3) for f, n in p["ours"].most_common(top)},
        }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--json", type=Path, required=True, help="the bench's --out (checkpointed per stage)")
    ap.add_argument("--after", required=True, help='stage to wait for, e.g. "concurrency 64"')
    ap.add_argument("--delay", type=float, default=1.0, help="seconds to wait after the stage (cascade set-up)")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--rate", type=int, default=100)
    ap.add_argument("--gil", action="store_true", help="only samples holding the GIL")
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--out", type=Path, required=True, help="path without suffix: writes OUT.txt and OUT.json")
    args = ap.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.prefix) / "bin" / "py-spy")
    wait_for_stage(args.json, args.after, args.timeout)
    time.sleep(args.delay)
    raw = args.out.with_suffix(".txt")
    cmd = [
        spy,
        "record",
        "--pid",
        str(args.pid),
        "--subprocesses",
        "--threads",
        "--nonblocking",
        "--full-filenames",
        "--format",
        "raw",
        "--rate",
        str(args.rate),
        "--duration",
        str(int(args.seconds)),
        "-o",
        str(raw),
    ]
    if args.gil:
        cmd.append("--gil")
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    summary = {
        "command": " ".join(cmd[1:]),
        "after_stage": args.after,
        "processes": summarise(raw, args.rate, int(args.seconds)),
    }
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v["threads_active_share"] for k, v in summary["processes"].items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
