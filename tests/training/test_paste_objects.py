"""What copy-paste pastes: photo cut-outs by box or by GrabCut outline, and drawn work-zone devices."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from training.copy_paste import PasteBank, object_alpha
from training.datasets import load_folder
from training.finetune import FinetuneConfig
from training.sprites import SPRITE_KINDS, draw_sprite

GROUND = (40, 150, 40)  # green ground under the cone, unlike any street it is pasted into


def _cone_photo(size=(160, 120)) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A textured green ground with an orange cone (a triangle) and its box."""
    w, h = size
    rng = np.random.default_rng(0)
    img = Image.fromarray(np.clip(np.array(GROUND) + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8))
    ImageDraw.Draw(img).polygon([(80, 30), (100, 100), (60, 100)], fill=(250, 110, 10))
    return np.asarray(img), (58, 28, 103, 102)


def _cone_folder(root: Path) -> Path:
    (root / "images" / "web").mkdir(parents=True)
    (root / "boxes" / "web").mkdir(parents=True)
    (root / "boxes" / "web" / "classes.txt").write_text("traffic_cone\n")
    lines = ["path,label,source,split,group"]
    photo, (x0, y0, x1, y1) = _cone_photo()
    h, w = photo.shape[:2]
    for i in range(2):
        Image.fromarray(photo).save(root / "images" / "web" / f"p{i}.png")
        box = f"0 {(x0 + x1) / 2 / w} {(y0 + y1) / 2 / h} {(x1 - x0) / w} {(y1 - y0) / h}\n"
        (root / "boxes" / "web" / f"p{i}.txt").write_text(box)
        lines.append(f"images/web/p{i}.png,1,web,train,g{i}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def test_grabcut_outline_keeps_the_cone_and_leaves_its_ground():
    photo, box = _cone_photo()
    alpha = object_alpha(photo, box)
    assert alpha is not None and alpha.shape == (box[3] - box[1], box[2] - box[0])
    x0, y0 = box[:2]
    assert alpha[60 - y0, 80 - x0] > 0.9  # inside the cone
    assert alpha[32 - y0, 62 - x0] < 0.1 and alpha[32 - y0, 99 - x0] < 0.1  # the box's top corners: ground
    assert np.array_equal(alpha, object_alpha(photo, box))  # the same box, the same outline


def test_grabcut_gives_no_outline_where_the_box_holds_no_object():
    flat = np.full((120, 160, 3), 128, np.uint8)
    assert object_alpha(flat, (40, 30, 100, 90)) is None


def _ground_pixels(pasted: np.ndarray, street: np.ndarray) -> int:
    changed = np.abs(pasted.astype(int) - street).sum(axis=2) > 30
    g = pasted.astype(int)
    greenish = (g[..., 1] > g[..., 0] + 40) & (g[..., 1] > g[..., 2] + 40)
    return int((changed & greenish).sum())


def test_a_grabcut_bank_pastes_the_cone_without_the_ground_it_stood_on(tmp_path):
    root = _cone_folder(tmp_path)
    samples = load_folder(root).samples
    by_box = PasteBank.from_samples(root, samples)
    by_outline = PasteBank.from_samples(root, samples, cut="grabcut")
    assert by_box.outlined == 0 and by_outline.outlined == 2
    street = np.full((480, 640, 3), 70, np.uint8)
    boxed = [by_box.paste(street, np.random.default_rng(seed)) for seed in range(4)]
    outlined = [by_outline.paste(street, np.random.default_rng(seed)) for seed in range(4)]
    assert sum(_ground_pixels(p, street) for p in boxed) > 100  # the ellipse brings green ground along
    assert sum(_ground_pixels(p, street) for p in outlined) < sum(_ground_pixels(p, street) for p in boxed) / 5
    for p in outlined:  # the cone itself still arrives: orange pixels on the road
        g = p.astype(int)
        assert ((g[..., 0] > 150) & (g[..., 2] < 80)).sum() > 20


def test_drawn_devices_are_orange_objects_with_their_own_outline():
    rng = np.random.default_rng(0)
    for kind in SPRITE_KINDS:
        rgb, alpha = draw_sprite(kind, rng, height=64)
        assert rgb.shape[:2] == alpha.shape and alpha.shape[0] == 64
        assert 0.1 < alpha.mean() < 0.9  # a shape, not a filled box
        inside = rgb[alpha > 0.5].astype(int)
        orange = (inside[:, 0] > 150) & (inside[:, 0] > inside[:, 2] + 100)
        assert orange.mean() > 0.15, kind
    with pytest.raises(ValueError, match="cone_tower"):
        draw_sprite("cone_tower", rng)


def test_sprites_join_the_bank_as_drawn_objects_the_same_for_every_subset(tmp_path):
    root = _cone_folder(tmp_path)
    samples = load_folder(root).samples
    one = PasteBank.from_samples(root, samples, sprites=8)
    other = PasteBank.from_samples(root, samples[:1], sprites=8)
    assert one.drawn == 8 and len(one.cutouts) == 10 and one.outlined == 0
    assert {c.kind for c in one.cutouts if c.drawn} == {"cone", "barrier", "sign"}  # box_schema's classes
    drawn = [c.pixels for c in one.cutouts if c.drawn]
    assert all(np.array_equal(a, c.pixels) for a, c in zip(drawn, [c for c in other.cutouts if c.drawn], strict=True))


def test_the_recipe_refuses_an_unknown_cut_and_a_negative_sprite_count():
    with pytest.raises(ValueError, match="paste_cut.*'mask'"):
        FinetuneConfig(paste_cut="mask")
    with pytest.raises(ValueError, match="paste_sprites"):
        FinetuneConfig(paste_sprites=-1)


def test_the_paste_probe_scores_each_negative_as_is_and_with_photo_and_drawn_objects(tmp_path):
    from tests.conftest import benchmark_script

    probe = benchmark_script("paste_probe")
    root = _cone_folder(tmp_path / "data")
    street = np.full((240, 320, 3), 70, np.uint8)
    lines = (root / "labels.csv").read_text().splitlines()
    for camera in probe.CAMERAS:
        (root / "images" / camera).mkdir()
        for i in range(3):
            Image.fromarray(street).save(root / "images" / camera / f"n{i}.png")
            lines.append(f"images/{camera}/n{i}.png,0,{camera},train,{camera}{i}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "probe"
    assert probe.build(root, out, per_camera=2, sprites=4, seed=0) == 2 * 2 * 3
    rows = load_folder(out).samples
    for version, label in (("as_is", 0), ("photo", 1), ("drawn", 1)):
        picked = [s for s in rows if s.source.endswith(":" + version)]
        assert len(picked) == 4 and {s.label for s in picked} == {label}
        changed = [np.abs(s.load().astype(int) - 70).max() > 40 for s in picked]
        assert all(changed) == (version != "as_is")  # the as-is frames are the street untouched
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text(
        "".join(
            json.dumps({"source": s.source, "label": s.label, "prob": p, "votes": [{"voter": "tiles", "prob": 1 - p}]})
            + "\n"
            for s, p in zip(rows[:3], (0.9, 0.2, 0.7), strict=True)
        )
    )
    camera = rows[0].source.split(":")[0]
    got = probe.summary(predictions)[camera]  # one negative's three versions, in order
    assert [got[v]["pooled"]["called_roadwork"] for v in probe.VERSIONS] == [1.0, 0.0, 1.0]
    assert [got[v]["tiles"]["mean_prob"] for v in probe.VERSIONS] == [0.1, 0.8, 0.3]
