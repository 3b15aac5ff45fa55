"""Each training view's own batch-norm statistics: kept in the checkpoint, chosen by a voter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.test_cli import invoke
from training.sample import make_sample


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(the sample's folder, a one-epoch `roadwork train backbone` checkpoint of its train rows)."""
    root = tmp_path_factory.mktemp("vs")
    data = make_sample(root / "sample", n=32)
    ckpt = root / "bb.pt"
    invoke("train", "backbone", "--data", str(data), "--out", str(ckpt), "--head", str(root / "h.npz"),
           "--epochs", "1", "--batch", "4", "--workers", "0")  # fmt: skip
    return data, ckpt


def _features(weights: Path, statistics: str | None) -> np.ndarray:
    from detectors.backbones import BackboneSpec, build_backbone

    spec = BackboneSpec(weights=weights, pool="meanmax", input_size=224, statistics=statistics)
    rng = np.random.default_rng(0)
    return build_backbone(spec).embed([rng.integers(0, 255, (96, 128, 3), dtype=np.uint8) for _ in range(2)])


def test_train_backbone_keeps_each_views_statistics_and_a_voter_normalises_with_the_one_it_names(trained):
    import torch

    from detectors.mobilenet import read_checkpoint

    _, ckpt = trained
    state = read_checkpoint(ckpt)
    assert sorted(state["view_statistics"]) == ["224", "448"]  # no tile view without --tiles-batch
    small, large = state["view_statistics"]["224"], state["view_statistics"]["448"]
    assert set(small) == {k for k in state["backbone"] if k.endswith(("running_mean", "running_var"))}
    assert any(not torch.equal(small[k], large[k]) for k in small)
    # the same weights answer differently with each view's statistics, and as before without any
    own, at_224, at_448 = (_features(ckpt, s) for s in (None, "224", "448"))
    assert not np.allclose(at_224, at_448) and not np.allclose(own, at_224)
    np.testing.assert_allclose(_features(ckpt, None), own, rtol=1e-5)
    # a view the checkpoint keeps nothing for is refused at load, naming the file and what it keeps
    with pytest.raises(
        ValueError, match=r"bb.pt' keep no batch-norm statistics of view 'tiles' \(they keep \['224', '448'\]\)"
    ):
        _features(ckpt, "tiles")
    with pytest.raises(ValueError, match="need fine-tuned weights"):
        from detectors.mobilenet import mobilenetv2_features

        mobilenetv2_features(None, "224")


def test_view_statistics_adds_them_to_a_checkpoint_trained_before_and_its_manifest_follows(trained, tmp_path, capsys):
    import torch

    from detectors.heads import verify_manifest, write_manifest
    from detectors.mobilenet import read_checkpoint
    from training.view_statistics import main

    data, ckpt = trained
    state = read_checkpoint(ckpt)
    del state["view_statistics"]
    old = tmp_path / "old.pt"
    torch.save(state, old)
    write_manifest(old, {"n_images": 16})
    with pytest.raises(ValueError, match="keep no batch-norm statistics of view '224' \\(they keep none\\)"):
        _features(old, "224")
    main(["--data", str(data), "--checkpoint", str(old), "--batches", "2", "--workers", "0"])
    assert sorted(read_checkpoint(old)["view_statistics"]) == ["224", "448"]
    manifest = verify_manifest(old)  # the new file's sha256, and how its statistics were made
    assert manifest["n_images"] == 16 and manifest["view_statistics"]["views"] == ["224", "448"]
    assert manifest["view_statistics"]["batches"] == 2
    assert _features(old, "448").shape == (2, 2560)
    with pytest.raises(SystemExit) as exit_:
        main(["--data", str(data), "--checkpoint", str(tmp_path / "gone.pt")])
    assert exit_.value.code == 2 and "gone.pt: no such file" in capsys.readouterr().err
