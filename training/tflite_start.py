"""A pretrained PyTorch start for an ultralytics detector, recovered from its TFLite export.

The only COCO-pretrained detector this machine has is ultralytics' own YOLOv8n exported to TFLite
with int8 weights (`../shared/weights/yolov8n_coco_int8.tflite`: weights int8 per output channel,
biases and activations float, batch norm folded into each convolution). TFLite cannot be trained,
but its weights are those of the PyTorch model, so this module puts them back:

1. build the architecture from its yaml (`yolov8n.yaml`, classes from the export's metadata) and
   fold its batch norms (`fuse()`), as the export did;
2. run the PyTorch model and the TFLite interpreter on the same image and give each PyTorch
   convolution, in the order it runs, the TFLite convolution of the same shape whose output it
   reproduces (the export reorders the head's branches, so shapes alone are ambiguous); an int8
   weight times its channel's scale is the float weight, to within half a quantisation step;
3. unfold each convolution's bias back into a batch norm whose statistics are those of its
   output on the calibration images, so that in training (batch statistics) and in eval (running
   statistics) the layer computes what the folded one did and fine-tuning starts from the
   pretrained features, not from an unnormalised net.

The result is an ultralytics checkpoint (`{"model": DetectionModel, ...}`) that `YOLO(path)`
loads and `roadwork train detector --model` fine-tunes like a released `.pt`. `check` scores
both models on an image: the recovered model must find the export's boxes.

    python -m training.tflite_start --tflite ../shared/weights/yolov8n_coco_int8.tflite \\
        --out runs/yolov8n_coco.pt

The weights keep the export's licence (AGPL-3.0 per its metadata): neither the export nor what is
recovered from it belongs in this repository.
"""

from __future__ import annotations

import argparse
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


class TfliteStartError(ValueError):
    """The export cannot be mapped onto the architecture (said to the user, naming the layer)."""


@dataclass(frozen=True)
class TfliteConv:
    """One CONV_2D of the export: float weight in PyTorch layout (O, I, kh, kw), bias, output tensor."""

    weight: np.ndarray
    bias: np.ndarray
    output: int


def export_metadata(path: Path) -> dict[str, Any]:
    """The ultralytics metadata zipped into the export (names, imgsz, task, licence)."""
    try:
        with zipfile.ZipFile(path) as z:
            return json.loads(z.read("metadata.json"))
    except (zipfile.BadZipFile, KeyError) as e:
        raise TfliteStartError(f"{path}: no ultralytics metadata.json inside; not an ultralytics export") from e


def _interpreter(path: Path) -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError as exc:
        raise TfliteStartError(
            "reading a TFLite export needs the `ai-edge-litert` package: pip install ai-edge-litert"
        ) from exc

    # without XNNPACK every intermediate tensor stays readable after invoke()
    it = Interpreter(
        model_path=str(path),
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        experimental_preserve_all_tensors=True,
    )
    it.allocate_tensors()
    return it


def tflite_convs(it: Any) -> list[TfliteConv]:
    """Every CONV_2D's weight, dequantised per output channel where it is int8."""
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    convs = []
    for op in it._get_ops_details():
        if op["op_name"] != "CONV_2D":
            continue
        w_t, b_t = tensors[op["inputs"][1]], tensors[op["inputs"][2]]
        w = it.get_tensor(w_t["index"]).astype(np.float32)
        q = w_t["quantization_parameters"]
        if len(q["scales"]):
            shape = (-1,) + (1,) * (w.ndim - 1)  # per output channel (axis 0)
            w = (w - q["zero_points"].reshape(shape)) * q["scales"].reshape(shape)
        b = it.get_tensor(b_t["index"]).astype(np.float32)
        w = np.ascontiguousarray(w.transpose(0, 3, 1, 2), dtype=np.float32)
        convs.append(TfliteConv(w, b, op["outputs"][0]))
    return convs


def _letterbox(image: np.ndarray, size: int) -> np.ndarray:
    """RGB uint8 HxWx3 -> 1 x size x size x 3 float in [0, 1], fitted on grey bars as ultralytics
    prepares an image for this export (its `LetterBox`)."""
    from ultralytics.data.augment import LetterBox

    return LetterBox((size, size), auto=False)(image=image)[None].astype(np.float32) / 255.0


def recover(tflite: Path, images: list[np.ndarray], yaml: str = "") -> tuple[Any, dict[str, Any]]:
    """The export's weights in an unfused ultralytics DetectionModel; `images` (RGB) calibrate the
    batch norms. The layers are mapped on ultralytics' bus.jpg, a photo the export's own rounding
    keeps close to the float network (on a dark night frame it drifts further). Returns the model
    (eval mode) and a report."""
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from ultralytics.nn.tasks import DetectionModel

    meta = export_metadata(tflite)
    if meta.get("task") != "detect":
        raise TfliteStartError(f"{tflite}: task {meta.get('task')!r}; only detection exports are recovered")
    names = {int(k): v for k, v in meta["names"].items()}
    size = int(meta["imgsz"][0])
    yaml = yaml or _yaml_from(meta)
    it = _interpreter(tflite)
    convs = tflite_convs(it)
    inp = _letterbox(np.asarray(Image.open(calibration_images()[0]).convert("RGB")), size)
    it.set_tensor(it.get_input_details()[0]["index"], inp)
    it.invoke()

    folded = DetectionModel(yaml, nc=len(names), verbose=False).eval()
    folded.fuse(verbose=False)
    used: set[int] = set()
    report: dict[str, Any] = {"layers": []}

    def assign(name: str) -> Any:
        def hook(mod: torch.nn.Conv2d, args: tuple) -> None:
            if name.endswith("dfl.conv"):  # fixed arange weights, not trained
                return
            x = args[0]
            shape = tuple(mod.weight.shape)
            cands = [k for k, c in enumerate(convs) if k not in used and c.weight.shape == shape]
            if not cands:
                raise TfliteStartError(f"{tflite}: no unused convolution of shape {shape} for layer {name}")
            errs = {}
            for k in cands:
                c = convs[k]
                y = F.conv2d(x, torch.from_numpy(c.weight), torch.from_numpy(c.bias), mod.stride, mod.padding)
                ref = torch.from_numpy(it.get_tensor(c.output)).permute(0, 3, 1, 2)
                if ref.shape != y.shape:
                    continue
                errs[k] = float((y - ref).abs().mean() / (ref.abs().mean() + 1e-6))
            ranked = sorted(errs, key=errs.get)
            best, err = (ranked[0], errs[ranked[0]]) if ranked else (None, float("inf"))
            runner_up = errs[ranked[1]] if len(ranked) > 1 else float("inf")
            # the export computes with int8 activations: a few per cent off is its own rounding; a
            # wrong layer is off by about its whole size
            if best is None or err > 0.2 or runner_up < 3 * err:
                raise TfliteStartError(
                    f"{tflite}: layer {name} matches no convolution of the export unambiguously "
                    f"(relative error {err:.3f}, next {runner_up:.3f})"
                )
            used.add(best)
            mod.weight.data = torch.from_numpy(convs[best].weight).clone()
            mod.bias = torch.nn.Parameter(torch.from_numpy(convs[best].bias).clone())
            report["layers"].append(
                {"layer": name, "tflite_conv": best, "relative_error": round(err, 5), "next": round(runner_up, 3)}
            )

        return hook

    hooks = [
        mod.register_forward_pre_hook(assign(n))
        for n, mod in folded.named_modules()
        if isinstance(mod, torch.nn.Conv2d)
    ]
    with torch.no_grad():
        folded(torch.from_numpy(inp).permute(0, 3, 1, 2))
    for h in hooks:
        h.remove()
    if len(used) != len(convs) - 1:  # every convolution but the DFL's
        raise TfliteStartError(f"{tflite}: {len(convs) - 1 - len(used)} convolutions of the export were not mapped")

    model = DetectionModel(yaml, nc=len(names), verbose=False)
    _unfold(model, folded, [torch.from_numpy(_letterbox(im, size)).permute(0, 3, 1, 2) for im in images])
    model.names = names
    model.args = {"imgsz": size, "task": "detect"}
    report.update(yaml=yaml, imgsz=size, n_classes=len(names), calibration_images=len(images), source=str(tflite))
    return model.eval(), report


def _yaml_from(meta: dict[str, Any]) -> str:
    desc = str(meta.get("description", ""))
    for word in desc.split():
        if word.lower().startswith(("yolov8", "yolo11", "yolov5")) and word[-1] in "nsmlx":
            return f"{word.lower()}.yaml"
    raise TfliteStartError(f"the export's description {desc!r} names no model; pass --yaml")


def _unfold(model: Any, folded: Any, batches: list[Any]) -> None:
    """Copy `folded`'s weights into `model` (same yaml, batch norms present): each Conv+BN gets the
    folded weight and a BN whose running mean/var are its convolution's output statistics on
    `batches` and whose affine part restores the folded output (BN(Wx) = Wx + b exactly in eval)."""
    import torch
    from ultralytics.nn.modules import Conv

    stats: dict[str, list[Any]] = {}
    f_mods = dict(folded.named_modules())
    for name, mod in model.named_modules():
        if isinstance(mod, Conv) and hasattr(mod, "bn"):
            mod.conv.weight.data = f_mods[name].conv.weight.data.clone()
    plain = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d) and m.bias is not None}
    for n in plain:  # the head's last 1x1 convolutions keep their own bias
        m = dict(model.named_modules())[n]
        m.weight.data, m.bias.data = f_mods[n].weight.data.clone(), f_mods[n].bias.data.clone()

    # statistics of each Conv's raw output (W x), layer inputs from the folded model (the same net)
    def record(name: str) -> Any:
        def hook(mod: Any, args: tuple) -> None:
            y = torch.nn.functional.conv2d(args[0], mod.conv.weight, None, mod.conv.stride, mod.conv.padding)
            stats.setdefault(name, []).append(torch.stack([y.mean((0, 2, 3)), (y * y).mean((0, 2, 3))]))

        return hook

    hooks = [m.register_forward_pre_hook(record(n)) for n, m in folded.named_modules() if isinstance(m, Conv)]
    with torch.no_grad():
        for x in batches:
            folded(x)
    for h in hooks:
        h.remove()
    for name, mod in model.named_modules():
        if not (isinstance(mod, Conv) and hasattr(mod, "bn")):
            continue
        s = torch.stack(stats[name]).mean(0)
        mean, var = s[0], (s[1] - s[0] ** 2).clamp_min(1e-4)
        bn, bias = mod.bn, f_mods[name].conv.bias.data
        bn.running_mean.data, bn.running_var.data = mean.clone(), (var - bn.eps).clamp_min(1e-6)
        bn.weight.data = torch.sqrt(bn.running_var + bn.eps)
        bn.bias.data = bias + mean


def boxes(model_or_path: Any, image: np.ndarray, conf: float = 0.25) -> list[tuple[int, float, list[float]]]:
    """(class, score, xyxy) of an ultralytics model or export on an RGB image, best first."""
    from ultralytics import YOLO

    yolo = model_or_path if isinstance(model_or_path, YOLO) else YOLO(str(model_or_path), task="detect")
    r = yolo.predict(image[..., ::-1].copy(), conf=conf, imgsz=640, verbose=False)[0].boxes
    found = [(int(c), float(s), [float(v) for v in b]) for c, s, b in zip(r.cls, r.conf, r.xyxy, strict=True)]
    return sorted(found, key=lambda d: -d[1])


def save(model: Any, out: Path, report: dict[str, Any]) -> Path:
    """An ultralytics checkpoint that `YOLO(out)` loads and the trainers fine-tune."""
    import torch

    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.half(), "train_args": {}, "recovered_from": report}, out)
    model.float()
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--tflite", type=Path, required=True, help="an ultralytics detection export (.tflite)")
    p.add_argument("--out", type=Path, required=True, help="where the PyTorch checkpoint goes (.pt)")
    p.add_argument("--yaml", default="", help="architecture yaml (default: from the export's description)")
    p.add_argument(
        "--calibration",
        type=Path,
        nargs="*",
        default=[],
        help="images whose statistics become the batch norms' (default: ultralytics' bus.jpg and zidane.jpg)",
    )
    a = p.parse_args(argv)
    from PIL import Image

    paths = a.calibration or calibration_images()
    try:
        if not a.tflite.is_file():
            raise TfliteStartError(f"{a.tflite}: no such file")
        images = [np.asarray(Image.open(x).convert("RGB")) for x in paths]
        model, report = recover(a.tflite, images, a.yaml)
    except (TfliteStartError, OSError) as exc:  # OSError: a calibration image missing or unreadable
        raise SystemExit(f"error: {exc}") from None
    save(model, a.out, report)
    worst = max(r["relative_error"] for r in report["layers"])
    print(f"wrote {a.out}: {len(report['layers'])} convolutions mapped (worst relative error {worst:.4f})")


def calibration_images() -> list[Path]:
    """The two photos ultralytics ships (offline)."""
    import ultralytics

    assets = Path(ultralytics.__file__).parent / "assets"
    return [assets / "bus.jpg", assets / "zidane.jpg"]


if __name__ == "__main__":
    main()
