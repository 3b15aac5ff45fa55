import io

import numpy as np
import pytest
from PIL import Image

from training.datasets import load_dataset, load_folder, read_yolo_boxes
from training.images import ImageLoadError, load_rgb


def jpeg_bytes(colour=(200, 100, 0), size=(40, 30), mode="RGB", fmt="JPEG"):
    buf = io.BytesIO()
    Image.new(mode, size, colour).save(buf, format=fmt)
    return buf.getvalue()


def test_folder_reports_bad_rows_with_file_names(tmp_path):
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes())
    (tmp_path / "labels.csv").write_text("path,label,source\na.jpg,1,s\nmissing.jpg,0,s\na.jpg,yes,s\n")
    ds = load_folder(tmp_path)
    assert [s.key for s in ds] == ["a.jpg"]
    assert any("missing.jpg: file not found" in p for p in ds.problems)
    assert any("'yes' is not 0 or 1" in p for p in ds.problems)


def test_folder_without_labels_csv_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="labels.csv"):
        load_folder(tmp_path)


@pytest.mark.parametrize(
    ("payload", "mode"),
    [
        (jpeg_bytes(mode="CMYK", colour=(0, 50, 100, 0)), "CMYK"),
        (jpeg_bytes(mode="RGBA", colour=(255, 0, 0, 0), fmt="PNG"), "RGBA"),
        (jpeg_bytes(mode="L", colour=128, fmt="PNG"), "L"),
    ],
)
def test_odd_modes_become_rgb(tmp_path, payload, mode):
    p = tmp_path / "x.img"
    p.write_bytes(payload)
    arr = load_rgb(p)
    assert arr.shape == (30, 40, 3) and arr.dtype == np.uint8
    if mode == "RGBA":  # fully transparent pixels are composited on white
        assert arr.min() == 255


def test_truncated_and_garbage_files_name_the_file(tmp_path):
    p = tmp_path / "broken.jpg"
    p.write_bytes(jpeg_bytes()[:50])
    with pytest.raises(ImageLoadError, match="broken.jpg"):
        load_rgb(p)
    p.write_bytes(b"not an image at all")
    with pytest.raises(ImageLoadError, match="broken.jpg"):
        load_rgb(p)


def test_parquet_rows_with_image_bytes(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table(
        {"image": [{"bytes": jpeg_bytes()}, {"bytes": jpeg_bytes((0, 0, 0))}, {"bytes": b"xx"}], "label": [1, 0, 2]}
    )
    pq.write_table(table, tmp_path / "natix.parquet")
    ds = load_dataset(tmp_path / "natix.parquet")
    assert [s.label for s in ds] == [1, 0]
    assert ds.samples[0].load().shape == (30, 40, 3)
    assert any("natix.parquet#2" in p for p in ds.problems)


def test_yolo_boxes(tmp_path):
    (tmp_path / "a.txt").write_text("0 0.5 0.5 0.2 0.3\n1 0.1 0.2 0.05 0.05\n")
    (tmp_path / "e.txt").write_text("")
    assert read_yolo_boxes(tmp_path / "a.txt").shape == (2, 5)
    assert read_yolo_boxes(tmp_path / "e.txt").shape == (0, 5)


def test_real_shared_data_loads_with_both_splits(shared_data):
    ds = load_folder(shared_data)
    assert not ds.problems
    assert {s.split for s in ds} == {"train", "dev"} and len(ds.select(split="dev")) > 200


def test_garbage_stays_unidentified_after_ultralytics_patches_pil(tmp_path):
    """ultralytics replaces PIL.Image.open with a wrapper that tries to install pi-heif."""
    pytest.importorskip("ultralytics")
    import ultralytics.utils.patches  # noqa: F401  (applies the patch)

    assert Image.open.__module__ != "PIL.Image"
    p = tmp_path / "garbage.jpg"
    p.write_bytes(b"\x00" * 100)
    with pytest.raises(ImageLoadError, match="garbage.jpg"):
        load_rgb(p)
