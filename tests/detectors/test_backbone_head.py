import numpy as np
import pytest

from cascade.config import VoterConfig
from cascade.types import Frame, Level
from detectors.backbone_head import BackboneHead, BackboneHeadParams, TileSpec
from detectors.backbones import BackboneSpec, MobileNetV2DeepSort, build_backbone
from detectors.heads import LinearHead, write_manifest
from detectors.mobilenet import tile_crops
from detectors.registry import UnknownDetectorError, build, resolve


@pytest.fixture(scope="module")
def mobilenet():
    return MobileNetV2DeepSort.load(BackboneSpec())


def random_head(dim: int, seed: int = 0, backbone: str = "mobilenetv2-deepsort") -> LinearHead:
    rng = np.random.default_rng(seed)
    return LinearHead(
        mean=np.zeros(dim), scale=np.ones(dim), coef=rng.normal(0, 0.01, dim), intercept=0.0, backbone=backbone
    )


def test_bundled_mobilenet_gives_1280_d_features_that_tell_images_apart(mobilenet):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)
    b = np.zeros((300, 200, 3), np.uint8)  # another size is resized
    f = mobilenet.embed([a, b])
    assert f.shape == (2, 1280) and np.isfinite(f).all()
    assert not np.allclose(f[0], f[1])


def test_backbone_head_votes_one_per_frame_in_order(mobilenet):
    det = BackboneHead("l0", Level.L0, mobilenet, random_head(1280), batch=2)
    frames = [Frame(np.full((64, 64, 3), v, np.uint8), source="t") for v in (0, 80, 160, 240, 255)]
    votes = det.predict(frames)
    assert [v.voter for v in votes] == ["l0"] * 5
    assert all(0.0 <= v.prob <= 1.0 for v in votes)
    single = [det.predict([f])[0].prob for f in frames]
    assert np.allclose([v.prob for v in votes], single, atol=1e-5)  # batching changes nothing


def test_head_dimension_mismatch_is_refused(mobilenet):
    with pytest.raises(ValueError, match="1280"):
        BackboneHead("l0", Level.L0, mobilenet, random_head(384))


def test_a_head_trained_on_another_backbone_of_the_same_width_is_refused(mobilenet, tmp_path):
    # a 1280-d head from another network would load and answer nonsense: it must not load at all
    with pytest.raises(
        ValueError, match=r"trained on backbone 'hf:facebook/dinov2-large'.*builds 'mobilenetv2-deepsort'"
    ):
        BackboneHead("l0", Level.L0, mobilenet, random_head(1280, backbone="hf:facebook/dinov2-large"))
    random_head(1280, backbone="mobilenetv2-deepsort:l0_backbone.pt").save(tmp_path / "head.npz")
    cfg = VoterConfig(name="l0", kind="backbone-head", level="L0", params={"head": "head.npz"})
    with pytest.raises(ValueError, match="l0_backbone.pt"):  # the ImageNet net is not the fine-tuned one
        build(cfg, tmp_path)


def test_registry_builds_from_config_and_checks_manifest(tmp_path):
    head_path = random_head(1280).save(tmp_path / "head.npz")
    write_manifest(head_path, {"note": "test"})
    cfg = VoterConfig(name="l0", kind="backbone-head", level="L0", params={"head": "head.npz"})
    det = build(cfg, tmp_path)
    assert isinstance(det, BackboneHead) and det.level is Level.L0
    head_path.write_bytes(head_path.read_bytes() + b"tampered")
    with pytest.raises(ValueError, match="manifest"):
        build(cfg, tmp_path)


def test_unknown_kind_lists_known_kinds():
    with pytest.raises(UnknownDetectorError, match="known kinds: backbone-head"):
        resolve("yolo-nonexistent")


def test_missing_head_file_says_how_to_make_one(tmp_path):
    cfg = VoterConfig(name="l0", kind="backbone-head", level="L0", params={"head": "nope.npz"})
    with pytest.raises(FileNotFoundError, match="roadwork train head"):
        build(cfg, tmp_path)


def tiny_dinov2_dir(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.Dinov2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8
    )
    model = transformers.Dinov2Model(cfg)
    model.save_pretrained(tmp_path)
    transformers.BitImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, do_center_crop=True
    ).save_pretrained(tmp_path)
    return tmp_path


def test_hf_automodel_path_loads_a_local_dinov2_and_embeds(tmp_path):
    folder = tiny_dinov2_dir(tmp_path)
    bb = build_backbone({"kind": "hf-automodel", "model": str(folder)})
    feats = bb.embed([np.zeros((50, 70, 3), np.uint8), np.full((32, 32, 3), 200, np.uint8)])
    assert bb.dim == 32 and feats.shape == (2, 32) and np.isfinite(feats).all()


def test_compile_is_ignored_on_the_cpu_and_a_bad_mode_is_refused(tmp_path):
    folder = tiny_dinov2_dir(tmp_path)
    plain = build_backbone({"kind": "hf-automodel", "model": str(folder)})
    asked = build_backbone({"kind": "hf-automodel", "model": str(folder), "compile": "reduce-overhead"})
    images = [np.full((32, 32, 3), 120, np.uint8)]
    assert asked.forward is asked.model  # torch.compile is for CUDA only: a CPU laptop runs eager
    np.testing.assert_allclose(asked.embed(images), plain.embed(images), rtol=1e-5)
    with pytest.raises(ValueError, match="compile"):
        build_backbone({"kind": "hf-automodel", "model": str(folder), "compile": "max-speed"})


def test_hf_hub_id_not_cached_fails_clearly_offline():
    pytest.importorskip("transformers")
    with pytest.raises(FileNotFoundError, match="allow_download"):
        build_backbone({"kind": "hf-automodel", "model": "roadwork-test/definitely-not-cached"})


class RedShare:
    """A fake backbone whose one feature is the share of pure-red pixels (a stand-in for a cone)."""

    name, dim = "red-share", 1

    def embed(self, images):
        return np.array([[float(((im[..., 0] > 200) & (im[..., 1] < 60)).mean())] for im in images])


def red_head() -> LinearHead:  # p > 0.5 once 0.5 % of the pixels are red
    return LinearHead(mean=np.zeros(1), scale=np.ones(1), coef=np.array([400.0]), intercept=-2.0, backbone="red-share")


def street_with_cone(h: int = 1080, w: int = 1920, side: int = 60) -> np.ndarray:
    image = np.full((h, w, 3), 90, np.uint8)
    image[h // 2 : h // 2 + side, w - 300 : w - 300 + side] = (255, 20, 20)  # a small, distant cone
    return image


def test_tile_voter_sees_a_small_object_that_the_whole_frame_squashes_away():
    frame = Frame(street_with_cone(), source="t")
    whole = BackboneHead("l0_head", Level.L0, RedShare(), red_head()).predict([frame])[0]
    tiles = BackboneHead("l0_tiles", Level.L0, RedShare(), red_head(), tiles=TileSpec()).predict([frame])[0]
    assert whole.prob < 0.5 < tiles.prob
    assert "most confident" in tiles.reason
    empty = Frame(np.full((1080, 1920, 3), 90, np.uint8), source="t")
    assert BackboneHead("l0_tiles", Level.L0, RedShare(), red_head(), tiles=TileSpec()).predict([empty])[0].prob < 0.5


def test_the_frame_size_limit_lives_in_the_profile_not_in_tiles():
    # `tiles.min_long_side` moved to the voter's `long_side` (the cascade skips it there): an old
    # profile is refused with the key named rather than silently tiling 224-px frames
    with pytest.raises(ValueError, match="min_long_side"):
        BackboneHeadParams.model_validate({"head": "h.npz", "tiles": {"min_long_side": 448}})


def test_tile_crops_cover_the_frame_with_overlap_and_follow_its_orientation():
    landscape = np.zeros((1080, 1920, 3), np.uint8)
    crops = tile_crops(landscape, [(2, 3)], overlap=0.25)
    assert len(crops) == 6
    assert crops[0].shape[:2] == (675, 800)  # a 540x640 cell reaching a quarter cell past two sides
    assert [c.shape[1] for c in crops[:3]] == [800, 960, 800]  # the middle column reaches past both sides
    portrait = tile_crops(np.zeros((1920, 1080, 3), np.uint8), [(2, 3)], overlap=0.0)
    assert {c.shape[:2] for c in portrait} == {(640, 540)}  # 3 rows x 2 cols for a portrait frame
    assert len(tile_crops(landscape)) == 18  # the voter's default grids: 2x3 + 3x4


def test_tiles_in_a_profile_are_validated():
    with pytest.raises(ValueError, match="overlap"):
        BackboneHeadParams.model_validate({"head": "h.npz", "tiles": {"overlap": 2}})
    with pytest.raises(ValueError, match="grids"):
        BackboneHeadParams.model_validate({"head": "h.npz", "tiles": {"grids": []}})
