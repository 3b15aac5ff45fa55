"""Fine-tuned MobileNetV2 checkpoints: loaded as data, refused with the file named when they do not fit."""

import numpy as np
import pytest
import torch

from detectors.backbones import BackboneSpec, MobileNetV2DeepSort
from detectors.mobilenet import mobilenetv2_features


def test_checkpoint_round_trip_changes_features_and_meanmax_doubles_the_dim(tmp_path):
    # given a checkpoint whose backbone differs from the ImageNet one
    model = mobilenetv2_features(None)
    state = {k: (v + 0.05 if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    path = tmp_path / "ft.pt"
    torch.save({"format": "roadwork-mnv2-finetuned/1", "backbone": state}, path)
    # when both are loaded as backbones
    image = np.random.default_rng(0).integers(0, 255, (224, 224, 3), dtype=np.uint8)
    imagenet = MobileNetV2DeepSort.load(BackboneSpec())
    tuned = MobileNetV2DeepSort.load(BackboneSpec(weights=path, pool="meanmax"))
    # then the tuned one is 2560-d (mean + max) and its mean half differs from ImageNet's
    a, b = imagenet.embed([image]), tuned.embed([image])
    assert a.shape == (1, 1280) and b.shape == (1, 2560) and tuned.dim == 2560
    assert not np.allclose(a[0], b[0, :1280], atol=1e-3)
    assert (b[0, 1280:] >= b[0, :1280] - 1e-5).all()  # the max over cells is never below the mean


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "not found"),
        (b"not a checkpoint", "cannot be read as a torch checkpoint"),
        ({"format": "someone-else/3", "backbone": {}}, "have format 'someone-else/3'"),
        ({"format": "roadwork-mnv2-finetuned/1", "backbone": {"fc.weight": torch.zeros(2)}}, "do not fit MobileNetV2"),
    ],
)
def test_bad_weights_are_refused_with_the_file_named(tmp_path, content, message):
    path = tmp_path / "w.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises((FileNotFoundError, ValueError), match=message) as info:
        mobilenetv2_features(path)
    assert "w.pt" in str(info.value)


def test_the_inference_network_gives_the_trained_networks_answers():
    # given the eager network and the one the voters serve (conv + batch norm folded, channels-last)
    from detectors.mobilenet import pool_map

    eager = mobilenetv2_features(None)
    served = MobileNetV2DeepSort.load(BackboneSpec(pool="meanmax", input_size=224))
    images = [np.random.default_rng(i).integers(0, 255, (300, 400, 3), dtype=np.uint8) for i in range(3)]
    # when both embed the same frames
    from detectors.mobilenet import to_tensor_batch

    with torch.inference_mode():
        want = pool_map(eager.features(torch.from_numpy(to_tensor_batch(images, 224))), "meanmax").numpy()
    got = served.embed(images)
    # then the features agree to float rounding: folding changes the speed, not the answers
    assert np.allclose(got, want, atol=1e-4, rtol=1e-4)
