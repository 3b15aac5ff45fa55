"""Fuzz the miner's decode path (miner.decode.decode_image) with hypothesis-generated payloads.

Every payload must either decode to a Frame or raise DecodeError: anything else is a crash, and
any single call over 1 s is a hang. Payload families: mutated real images (bit flips, byte
overwrites, truncation, in JPEG/PNG/WebP/BMP/GIF and odd modes), crafted headers that lie about
their size, random bytes, random text, broken base64 and non-string values.

    python benchmarks/miner_fuzz_decode.py --payloads 100000 --out runs/miner_fuzz_decode.json

Writes JSON (counts, reasons, latency percentiles, the first crashes with a reproducer file).
"""

from __future__ import annotations

import argparse
import base64
import faulthandler
import hashlib
import io
import json
import os
import struct
import sys
import time
import warnings
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from miner.config import DecodeConfig
from miner.decode import DecodeError, decode_image

HANG_S = 1.0


class Enough(Exception):
    pass


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def seed_images() -> list[bytes]:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    return [
        _save(rgb, "JPEG", quality=75),
        _save(rgb, "JPEG", quality=90, progressive=True),
        _save(rgb, "JPEG", exif=exif.tobytes()),
        _save(rgb.convert("CMYK"), "JPEG"),
        _save(rgb.convert("L"), "JPEG"),
        _save(rgb, "PNG"),
        _save(rgb.convert("RGBA"), "PNG"),
        _save(rgb.convert("P"), "PNG"),
        _save(Image.new("I;16", (40, 30), 3000), "PNG"),
        _save(rgb.convert("1"), "PNG"),
        _save(rgb, "WEBP"),
        _save(rgb.convert("RGBA"), "WEBP", lossless=True),
        _save(rgb, "BMP"),
        _save(rgb, "GIF"),
        _save(rgb, "TIFF"),
    ]


def png_claiming(w: int, h: int, depth: int, colour: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 256)) + chunk(b"IEND", b"")
    )


def jpeg_claiming(seed: bytes, w: int, h: int) -> bytes:
    raw = bytearray(seed)
    at = raw.find(b"\xff\xc0")
    at = at if at >= 0 else raw.find(b"\xff\xc2")
    if at >= 0:
        raw[at + 5 : at + 9] = struct.pack(">HH", h, w)
    return bytes(raw)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def strategies(seeds: list[bytes], variants: int) -> st.SearchStrategy:
    seed = st.sampled_from(seeds)
    mutations = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=12)

    @st.composite
    def mutated(draw):
        """One hypothesis-chosen mutation of a seed image, plus `variants - 1` more from a seeded RNG."""
        raw = bytearray(draw(seed))
        for pos, val in draw(mutations):
            raw[pos % len(raw)] = val
        cut = draw(st.one_of(st.none(), st.integers(0, len(raw))))
        base = bytes(raw[:cut] if cut is not None else raw)
        out = [b64(base)]
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        for _ in range(variants - 1):
            v = bytearray(base) or bytearray(b"\0")
            for pos in rng.integers(0, len(v), size=int(rng.integers(1, 9))):
                v[pos] = int(rng.integers(0, 256))
            if rng.random() < 0.3:
                v = v[: int(rng.integers(0, len(v) + 1))]
            out.append(b64(bytes(v)))
        return "mutated", out

    @st.composite
    def header_lies(draw):
        w, h = draw(st.integers(0, 70_000)), draw(st.integers(0, 70_000))
        if draw(st.booleans()):
            raw = png_claiming(
                w, h, draw(st.sampled_from([1, 2, 4, 8, 16, 3, 0])), draw(st.sampled_from([0, 2, 3, 4, 6, 1]))
            )
        else:
            raw = jpeg_claiming(seeds[0], min(w, 65535), min(h, 65535))
        return "header_lies", [b64(raw)]

    junk_b64 = st.binary(max_size=4096).map(lambda b: ("random_bytes", [b64(b)]))
    text = st.text(max_size=400).map(lambda t: ("random_text", [t]))
    broken = st.tuples(seed, st.text(alphabet="=-_!@ \n\t.*", min_size=1, max_size=8), st.integers(0, 4000)).map(
        lambda t: ("broken_base64", [b64(t[0])[: t[2]] + t[1] + b64(t[0])[t[2] :]])
    )
    others = st.one_of(
        st.none(), st.integers(), st.floats(), st.lists(st.integers(), max_size=3), st.binary(max_size=64)
    ).map(lambda v: ("not_text", [v]))
    return st.one_of(mutated(), mutated(), mutated(), header_lies(), junk_b64, text, broken, others)


class Recorder:
    """Runs one payload through decode_image and keeps the counts, timings and first crashes."""

    def __init__(self, limits: DecodeConfig, crash_dir: Path) -> None:
        self.limits, self.crash_dir = limits, crash_dir
        self.counts: Counter = Counter()
        self.families: Counter = Counter()
        self.times: list[float] = []
        self.cpu_times: list[float] = []
        self.crashes: list[dict] = []
        self.slowest: list[dict] = []

    def check(self, family: str, payload: object) -> None:
        self.families[family] += 1
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            decode_image(payload, self.limits)
            outcome = "accepted"
        except DecodeError as exc:
            outcome = exc.reason
        except BaseException as exc:
            outcome = "CRASH"
            self._keep_crash(family, payload, exc)
        dt, cpu = time.perf_counter() - t0, time.thread_time() - c0
        self.times.append(dt)
        self.cpu_times.append(cpu)
        self.counts[outcome] += 1
        if dt > HANG_S and len(self.slowest) < 20:
            self.slowest.append(
                {"family": family, "seconds": round(dt, 3), "cpu_seconds": round(cpu, 3), "outcome": outcome}
            )

    def _keep_crash(self, family: str, payload: object, exc: BaseException) -> None:
        if len(self.crashes) >= 20:
            return
        blob = payload.encode() if isinstance(payload, str) else repr(payload).encode()
        self.crash_dir.mkdir(parents=True, exist_ok=True)
        path = self.crash_dir / f"{hashlib.sha1(blob).hexdigest()[:12]}.txt"
        path.write_bytes(blob)
        self.crashes.append({"family": family, "error": f"{type(exc).__name__}: {exc}"[:300], "file": str(path)})

    def result(self, target: int, seconds: float) -> dict:
        t, cpu = np.array(self.times) * 1000, np.array(self.cpu_times) * 1000
        return {
            "payloads": len(self.times),
            "target": target,
            "duration_s": round(seconds, 1),
            "crashes": self.counts.get("CRASH", 0),
            "hangs_over_1s": int((t > HANG_S * 1000).sum()),
            "accepted": self.counts.get("accepted", 0),
            "outcomes": dict(self.counts.most_common()),
            "families": dict(self.families.most_common()),
            "decode_ms": {
                "p50": float(np.percentile(t, 50)),
                "p99": float(np.percentile(t, 99)),
                "max": float(t.max()),
            },
            "decode_cpu_ms": {"p99": float(np.percentile(cpu, 99)), "max": float(cpu.max())},
            "crash_examples": self.crashes,
            "slowest": self.slowest,
            "versions": {
                "pillow": Image.__version__,
                "hypothesis": __import__("hypothesis").__version__,
                "python": sys.version.split()[0],
            },
            "limits": self.limits.model_dump(),
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--payloads", type=int, default=100_000)
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "runs")) / "miner_fuzz_decode.json")
    ap.add_argument("--variants", type=int, default=6, help="RNG mutations per hypothesis-mutated image")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)  # refused anyway, by our lower limit
    warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\..*")  # corrupt EXIF is expected here
    rec = Recorder(DecodeConfig(formats=["JPEG", "PNG", "WEBP", "BMP", "GIF"]), args.out.parent / "miner_fuzz_crashes")
    faulthandler.dump_traceback_later(600, exit=True)  # a true hang inside C code ends the run loudly

    @settings(
        max_examples=10**9,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategies(seed_images(), args.variants))
    def fuzz(item):
        family, payloads = item
        for payload in payloads:
            rec.check(family, payload)
        if len(rec.times) >= args.payloads:
            raise Enough

    t_start = time.time()
    try:
        fuzz()
    except Enough:
        pass
    faulthandler.cancel_dump_traceback_later()
    result = rec.result(args.payloads, time.time() - t_start)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        json.dumps(
            {k: result[k] for k in ("payloads", "duration_s", "crashes", "hangs_over_1s", "accepted", "decode_ms")}
        )
    )
    raise SystemExit(1 if result["crashes"] or result["hangs_over_1s"] else 0)


if __name__ == "__main__":
    main()
