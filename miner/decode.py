"""Safe decode of a validator's base64 image into a cascade `Frame`.

Order matters: every limit that can be checked on the text or on the image header is checked
before any pixel is decoded, so a 20000x20000 "decompression bomb" is refused in microseconds.

    base64 text ─ type, length ─► bytes ─ size ─► Pillow header ─ format, width x height ─►
    decode (JPEG drafts at reduced scale when large) ─► to_rgb (EXIF orientation, alpha on white,
    CMYK, 16-bit) ─► uint8 (H, W, 3) ─► Frame

Anything that fails raises `DecodeError` with a short machine `reason` (a Prometheus label) and
a message that quotes what came in. Nothing here logs the payload itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re

import numpy as np
from PIL import Image, UnidentifiedImageError

from cascade.types import Frame
from miner.config import DecodeConfig
from training.images import open_image, to_rgb

REASONS = (
    "not_text",
    "empty",
    "too_large",
    "bad_base64",
    "unsupported_format",
    "too_many_pixels",
    "bad_size",
    "truncated",
    "corrupt",
)
_DATA_URI = re.compile(rb"^data:image/[a-z0-9.+-]+;base64,", re.IGNORECASE)
_WHITESPACE = re.compile(rb"\s+")
BOMB_CHECK_PIXELS = 1_000_000


class DecodeError(ValueError):
    """An image we refuse; `reason` is one of REASONS, the message says why in words."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def b64_to_bytes(payload: str | bytes, limits: DecodeConfig) -> bytes:
    """Base64 text (optionally a data URI, line breaks allowed, padding optional) -> file bytes."""
    if isinstance(payload, str):
        if not payload.isascii():
            raise DecodeError("bad_base64", "image text has non-ASCII characters; expected base64")
        text = payload.encode("ascii")
    elif isinstance(payload, (bytes, bytearray)):
        text = bytes(payload)
    else:
        raise DecodeError("not_text", f"image must be base64 text, got {type(payload).__name__}")
    if len(text) > limits.max_b64_chars:
        raise DecodeError(
            "too_large",
            f"image text is {len(text)} characters, over the {limits.max_b64_chars} allowed (miner.decode.max_bytes)",
        )
    text = _WHITESPACE.sub(b"", _DATA_URI.sub(b"", text.strip(), count=1))
    if not text:
        raise DecodeError("empty", "image is empty")
    text += b"=" * (-len(text) % 4)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DecodeError("bad_base64", f"image is not valid base64 ({exc}); first characters {text[:16]!r}") from None
    if not raw:
        raise DecodeError("empty", "image decodes to zero bytes")
    if len(raw) > limits.max_bytes:
        raise DecodeError("too_large", f"image is {len(raw)} bytes, over miner.decode.max_bytes={limits.max_bytes}")
    return raw


def _check_header(img: Image.Image, limits: DecodeConfig, n_bytes: int) -> None:
    w, h = img.size
    if w * h > limits.max_pixels:
        raise DecodeError(
            "too_many_pixels",
            f"{img.format} header says {w}x{h} = {w * h} pixels, over miner.decode.max_pixels={limits.max_pixels}",
        )
    if max(w, h) > limits.max_side or min(w, h) < limits.min_side:
        raise DecodeError(
            "bad_size",
            f"{img.format} header says {w}x{h}; each side must be in "
            f"[{limits.min_side}, {limits.max_side}] (miner.decode.min_side/max_side)",
        )
    if w * h > BOMB_CHECK_PIXELS and n_bytes < w * h * limits.min_bytes_per_pixel:
        raise DecodeError(
            "too_many_pixels",
            f"{img.format} header says {w}x{h} from only {n_bytes} bytes "
            f"(< miner.decode.min_bytes_per_pixel={limits.min_bytes_per_pixel:g} "
            "per pixel): a likely decompression bomb",
        )


def _decode_pixels(img: Image.Image, limits: DecodeConfig) -> np.ndarray:
    cap = limits.output_max_side
    if cap is not None and img.format == "JPEG" and max(img.size) > cap:
        img.draft("RGB", (cap, cap))  # DCT scaling: decodes at 1/2, 1/4 or 1/8 size, never below cap
    img.load()
    rgb = to_rgb(img)
    if cap is not None and max(rgb.size) > cap:
        rgb.thumbnail((cap, cap), Image.BILINEAR)
    arr = np.asarray(rgb, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise DecodeError("corrupt", f"decoded to shape {arr.shape}, expected (H, W, 3)")
    return np.ascontiguousarray(arr)


def decode_bytes(raw: bytes, limits: DecodeConfig, source: str = "validator") -> Frame:
    """Image file bytes -> Frame, with every limit in `limits` enforced."""
    try:
        with open_image(io.BytesIO(raw), formats=list(limits.formats)) as img:
            fmt = img.format or "?"
            _check_header(img, limits, len(raw))
            arr = _decode_pixels(img, limits)
    except DecodeError:
        raise
    except UnidentifiedImageError:
        raise DecodeError(
            "unsupported_format",
            f"not an image in an allowed format "
            f"({', '.join(limits.formats)}; miner.decode.formats); "
            f"starts with {raw[:8]!r}",
        ) from None
    except Image.DecompressionBombError as exc:
        raise DecodeError("too_many_pixels", f"decompression bomb: {exc}") from None
    except OSError as exc:
        reason = "truncated" if "truncated" in str(exc) or "premature" in str(exc).lower() else "corrupt"
        raise DecodeError(reason, f"cannot decode image ({type(exc).__name__}: {exc})") from None
    except Exception as exc:
        # (SyntaxError, struct.error, IndexError, ZeroDivisionError, ...): every one is a refusal
        raise DecodeError("corrupt", f"cannot decode image ({type(exc).__name__}: {exc})") from None
    digest = hashlib.blake2b(raw, digest_size=8).hexdigest()
    return Frame(
        arr,
        source=source,
        frame_id=digest,
        meta={"format": fmt, "bytes": len(raw), "decoded_size": [arr.shape[1], arr.shape[0]]},
    )


def decode_image(payload: str | bytes, limits: DecodeConfig | None = None, source: str = "validator") -> Frame:
    """A synapse's `image` field -> Frame, or DecodeError(reason, message)."""
    limits = limits or DecodeConfig()
    return decode_bytes(b64_to_bytes(payload, limits), limits, source)
