"""torch.profiler tables for named voters of a profile: which operators take the time.

    python benchmarks/op_profile.py --config configs/h100x2.yaml --only owlv2_b16 sam_mask_b --out-dir $OUT

Each voter is built with random weights at full size, warmed on a batch of its size, then one
`predict` on that batch is profiled (CPU and CUDA). Prints the top operators by device time and
by CPU self time; writes the same tables as <voter>_<HxW>.txt. Frames carry two L1 boxes so L2
validators run their model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from roadwork.env import configure_process

configure_process()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=Path("configs/h100x2.yaml"))
    ap.add_argument("--only", nargs="+", required=True, help="voter names")
    ap.add_argument("--sizes", default="224x224,1080x1920")
    ap.add_argument("--rows", type=int, default=14)
    ap.add_argument("--out-dir", type=Path, default=Path("runs/op_profile"))
    a = ap.parse_args()

    import torch
    from stage_profile import frames_with_boxes
    from torch.profiler import ProfilerActivity, profile

    from miner.profile import load_profile
    from roadwork.bench.build import build_one, inner
    from roadwork.bench.options import GpuBenchOptions, place, split_voters

    opts = GpuBenchOptions(single_gpu=True, only=a.only)
    cfg = place(load_profile(a.config), opts)
    voters, _ = split_voters(cfg, opts)
    a.out_dir.mkdir(parents=True, exist_ok=True)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    for v in voters:
        det, err = build_one(cfg, v, opts)
        if det is None:
            print(v.name, err)
            continue
        m = inner(det)
        for size in a.sizes.split(","):
            h, w = (int(x) for x in size.split("x"))
            frames = frames_with_boxes(v.batch, h, w)
            votes = m.predict(frames)
            failed = [x.reason for x in votes if x.abstained]
            with profile(activities=acts) as prof:
                m.predict(frames)
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
            dev_key = "device_time_total" if torch.cuda.is_available() else "cpu_time_total"
            text = (
                f"== {v.name} {size} batch {v.batch} abstained {len(failed)} {failed[:1]}\n"
                + prof.key_averages().table(sort_by=dev_key, row_limit=a.rows)
                + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=a.rows)
            )
            (a.out_dir / f"{v.name}_{size}.txt").write_text(text)
            print(text, flush=True)
        close = getattr(det, "close", None)
        if callable(close):
            close()


if __name__ == "__main__":
    main()
