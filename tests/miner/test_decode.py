import base64
import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from miner.config import DecodeConfig
from miner.decode import DecodeError, b64_to_bytes, decode_image
from tests.miner.helpers import encode


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with one tiny IDAT: a bomb that costs nothing to send."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def jpeg_with_size(width: int, height: int) -> bytes:
    """A real 64x64 JPEG whose SOF0 marker is rewritten to claim width x height."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(buf, format="JPEG")
    raw = bytearray(buf.getvalue())
    sof = raw.index(b"\xff\xc0")
    raw[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(raw)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def with_exif_orientation(img: Image.Image, orientation: int) -> str:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes())
    return b64(buf.getvalue())


@pytest.mark.parametrize(
    "payload, size",
    [
        (encode(size=(224, 224)), (224, 224)),  # what validators send
        ("data:image/jpeg;base64," + encode(size=(64, 48)), (64, 48)),  # data URI prefix
        (encode(size=(64, 48)).rstrip("="), (64, 48)),  # missing padding
        ("\n".join(encode(size=(64, 48))[i : i + 76] for i in range(0, 9999, 76)), (64, 48)),  # MIME line breaks
        (encode(size=(64, 48)).encode(), (64, 48)),  # bytes, not str
        (encode(Image.new("RGBA", (40, 30), (255, 0, 0, 0)), "PNG"), (40, 30)),  # alpha
        (encode(Image.new("CMYK", (40, 30), (0, 255, 0, 0)), "JPEG"), (40, 30)),  # CMYK JPEG
        (encode(Image.new("I;16", (40, 30), 4000), "PNG"), (40, 30)),  # 16-bit grey PNG
        (encode(Image.new("P", (40, 30)), "PNG"), (40, 30)),  # palette
        (encode(Image.new("L", (40, 30)), "WEBP"), (40, 30)),  # grey WebP
        (with_exif_orientation(Image.new("RGB", (40, 20)), 6), (20, 40)),  # EXIF: rotate 90
    ],
)
def test_accepted_inputs_become_rgb_frames(payload, size):
    frame = decode_image(payload)
    assert frame.image.dtype == np.uint8 and frame.image.shape[2] == 3
    assert frame.size == size


def test_transparent_pixels_are_composited_on_white():
    frame = decode_image(encode(Image.new("RGBA", (16, 16), (0, 0, 0, 0)), "PNG"))
    assert frame.image.min() == 255


@pytest.mark.parametrize(
    "payload, reason",
    [
        (12345, "not_text"),
        (None, "not_text"),
        ("", "empty"),
        ("   \n", "empty"),
        ("not base64 at all!", "bad_base64"),
        ("héllo", "bad_base64"),
        (b64(b"\x00" * 100), "unsupported_format"),  # random bytes
        (encode(Image.new("RGB", (32, 32)), "GIF"), "unsupported_format"),  # format not allowed by default
        (encode(Image.new("RGB", (32, 32)), "TIFF"), "unsupported_format"),
        (encode(size=(4, 4)), "bad_size"),  # too small to be a photograph
        (b64(png_header(20_000, 20_000)), "too_many_pixels"),  # decompression bomb (Pillow's own check)
        (b64(png_header(15_000, 5_000)), "too_many_pixels"),  # over our 40 M pixel limit
        (b64(jpeg_with_size(20_000, 20_000)), "too_many_pixels"),  # JPEG header lies about its size
        (b64(png_header(30_000, 100)), "bad_size"),  # one side over max_side
    ],
)
def test_refused_inputs_name_a_reason(payload, reason):
    with pytest.raises(DecodeError) as err:
        decode_image(payload)
    assert err.value.reason == reason and str(err.value)


def test_truncated_jpeg_is_refused_as_truncated():
    raw = base64.b64decode(encode(size=(224, 224)))
    with pytest.raises(DecodeError) as err:
        decode_image(b64(raw[: len(raw) // 2]))
    assert err.value.reason in ("truncated", "corrupt")


def test_bomb_is_refused_before_decoding():
    # given a 20000x20000 claim that would need 1.2 GB of pixels
    payload = b64(png_header(20_000, 20_000))
    # when / then it is refused in well under a second
    t0 = time.perf_counter()
    with pytest.raises(DecodeError):
        decode_image(payload)
    assert time.perf_counter() - t0 < 0.1


def test_size_limits_come_from_config():
    limits = DecodeConfig(max_bytes=2048)
    with pytest.raises(DecodeError) as err:
        b64_to_bytes(encode(size=(300, 300)), limits)
    assert err.value.reason == "too_large" and "max_bytes" in str(err.value)
    with pytest.raises(DecodeError) as err:
        b64_to_bytes("A" * (limits.max_b64_chars + 1), limits)
    assert err.value.reason == "too_large"


def test_large_images_are_scaled_down_to_output_max_side():
    frame = decode_image(encode(size=(3000, 1500)), DecodeConfig(output_max_side=1024))
    assert max(frame.size) <= 1024 and frame.meta["format"] == "JPEG"


def test_formats_can_be_widened_in_config():
    frame = decode_image(encode(Image.new("RGB", (32, 32)), "GIF"), DecodeConfig(formats=["JPEG", "GIF"]))
    assert frame.size == (32, 32)


def test_error_messages_never_echo_the_payload():
    payload = b64(b"\x00" * 5000)
    with pytest.raises(DecodeError) as err:
        decode_image(payload)
    assert payload not in str(err.value) and len(str(err.value)) < 300


def test_a_header_claiming_millions_of_pixels_from_a_few_bytes_is_refused():
    # given a real 64x64 JPEG whose header claims 3000x2000 (6 M pixels from ~1 kB)
    with pytest.raises(DecodeError) as err:
        decode_image(b64(jpeg_with_size(3000, 2000)))
    assert err.value.reason == "too_many_pixels" and "bytes" in str(err.value)
    # and the check can be turned off
    assert decode_image(b64(jpeg_with_size(3000, 2000)), DecodeConfig(min_bytes_per_pixel=0)).size[0] <= 2048
