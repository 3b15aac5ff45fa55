"""What a bench run used: GPU busy share and CPU cores over a run, peak memory per device against
the plan, and the machine it ran on."""

from __future__ import annotations

import platform
import time
from typing import Any

import numpy as np

from cascade.config import CascadeConfig
from roadwork.bench.build import cuda_devices
from roadwork.bench.options import GIB


def memory_report(voters: list, built: set[str], cfg: CascadeConfig, procs: list | None = None) -> dict[str, Any]:
    """Peak allocated per device vs what build_plan predicts for the same in-process voters
    (read from each device's worker process when the voters run in workers)."""
    import torch

    from cascade.placement import PlacementConfig, build_plan

    devices = cuda_devices([v for v in voters if v.name in built])
    if not devices or not torch.cuda.is_available():
        return {}
    gpus = [g for g in cfg.placement.gpus if g.id in devices] or [
        {"id": d, "memory_gib": torch.cuda.get_device_properties(d).total_memory / GIB} for d in devices
    ]
    placement = PlacementConfig.model_validate({"gpus": [g if isinstance(g, dict) else g.model_dump() for g in gpus]})
    workers = max([sum(p.device == d for p in procs or []) for d in devices] + [1])
    plan = build_plan(
        [v for v in voters if v.name in built and v.memory is not None],
        placement,
        one_batch_at_a_time=bool(procs),
        workers_per_device=workers,
        lanes={n: k for p in procs or [] for n, k in p.lane_of.items()},
        workers={n: p.worker for p in procs or [] for n in p.names} if cfg.runtime.worker_split == "models" else None,
    )
    planned = {g.gpu.id: g.planned_gib for g in plan.gpus}
    remote: dict[str, dict[str, float]] = {}  # each worker process sees its own allocations: summed per card
    for p in procs or []:
        for d, m in p.memory().items():
            for key in ("peak_allocated_gib", "reserved_gib"):
                remote.setdefault(d, {}).setdefault(key, 0.0)
                remote[d][key] += m[key]
    out = {}
    for d in devices:
        if d in remote:
            peak, reserved = remote[d]["peak_allocated_gib"], remote[d]["reserved_gib"]
        else:
            peak, reserved = torch.cuda.max_memory_allocated(d) / GIB, torch.cuda.memory_reserved(d) / GIB
        out[d] = {
            "peak_allocated_gib": round(peak, 3),
            "reserved_gib": round(reserved, 3),
            "planned_gib": round(planned.get(d, 0.0), 3),
            "measured_over_planned": round(peak / planned[d], 3) if planned.get(d) else None,
        }
    return out


def machine() -> dict[str, Any]:
    import os

    import torch

    gpus = (
        [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    )
    return {
        "gpus": gpus,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }


class Utilisation:
    """Samples each GPU's busy share (NVML, every 100 ms) and the CPU time used over a run.

    `cpu_cores_busy` is CPU seconds (this process and its device workers) over wall seconds: near
    the core count means the run is bound by the CPU; a GPU near 100 % busy means that GPU is the
    limit; neither (as measured on 2x H100) points at one thread holding the GIL.
    """

    def __init__(self, devices: list[str], period_s: float = 0.1, procs: list | None = None) -> None:
        import threading

        self.devices, self.period_s, self.procs = devices, period_s, list(procs or [])
        self.samples: dict[str, list[float]] = {d: [] for d in devices}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="utilisation", daemon=True)

    def _run(self) -> None:
        import torch

        while not self._stop.wait(self.period_s):
            for d in self.devices:
                try:
                    self.samples[d].append(float(torch.cuda.utilization(d)))
                except Exception:
                    return

    @staticmethod
    def _cpu_s() -> dict[str, float]:
        """CPU seconds of this process ("main") and of each child (worker) process by pid (psutil);
        without psutil, of this process only."""
        try:
            import psutil
        except ImportError:
            return {"main": time.process_time()}
        me = psutil.Process()
        out = {"main": sum(me.cpu_times()[:2])}
        for child in me.children(recursive=True):
            try:
                out[str(child.pid)] = sum(child.cpu_times()[:2])
            except psutil.Error:
                pass
        return out

    def _busy_s(self) -> dict[str, float]:
        return {f"{p.device}#{p.worker}": p.busy_s for p in self.procs}  # as the metrics label it

    def _busy_by_voter(self) -> dict[str, float]:
        out: dict[str, float] = {}  # a voter's time summed over its device's workers
        for p in self.procs:
            for n, s in p.busy_by_voter.items():
                out[n] = out.get(n, 0.0) + s
        return out

    def __enter__(self) -> Utilisation:
        self._cpu0, self._busy0, self._t0 = self._cpu_s(), self._busy_s(), time.perf_counter()
        self._voter0 = self._busy_by_voter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        wall = max(time.perf_counter() - self._t0, 1e-9)
        cpu = self._cpu_s()
        per = {k: (v - self._cpu0.get(k, 0.0)) / wall for k, v in cpu.items()}
        self.cpu_cores_busy = sum(per.values())
        self.cpu_cores_main = per["main"]
        self.cpu_cores_workers = {k: round(v, 2) for k, v in per.items() if k != "main" and v > 0.05}
        lanes = {f"{p.device}#{p.worker}": p.lanes for p in self.procs}  # busy_s sums a worker's lanes
        self.worker_busy_pct = {
            k: round(100 * (v - self._busy0[k]) / wall / lanes[k], 1) for k, v in self._busy_s().items()
        }
        self.voter_busy_s = {n: s - self._voter0.get(n, 0.0) for n, s in self._busy_by_voter().items()}

    def report(self) -> dict[str, Any]:
        gpus = {d: round(float(np.mean(v)), 1) for d, v in self.samples.items() if v}
        out = {
            "gpu_busy_pct_mean": gpus,
            "cpu_cores_busy": round(self.cpu_cores_busy, 2),
            "cpu_cores_main": round(self.cpu_cores_main, 2),
            "cpu_cores_workers": self.cpu_cores_workers,
        }
        if self.worker_busy_pct:
            out["worker_busy_pct"] = self.worker_busy_pct
        return out


def worker_processes(dets: list) -> list:
    """The device worker processes behind these detectors, once each."""
    from detectors.device_process import RemoteVoter

    return list({id(p): p for d in dets if isinstance(m := d.unwrap(), RemoteVoter) for p in m.procs}.values())
