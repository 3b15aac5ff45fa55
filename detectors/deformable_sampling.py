"""Multi-scale deformable attention's sampling summed level by level instead of stacked.

transformers copies one pure-PyTorch `MultiScaleDeformableAttention` into each model of the
Deformable-DETR family (Grounding DINO among them; its compiled kernel comes from the hub, so not
offline). It samples each feature level with `grid_sample` into (batch*heads, dim, queries,
points), stacks all levels into one (..., levels*points) tensor, multiplies by the attention
weights and sums that last axis of 16. In Grounding DINO's encoder every pixel of the four levels
is a query, so at 800 px the stack alone took 32 of 120 ms of GPU time per batch of 8 on an H200,
and the sum over an inner axis of 16 another 19 (op_profile_h200/gdino_t_224x224_after.txt).

Here each level's sampling grid is laid out (points, queries), so `grid_sample` writes (batch*heads,
dim, points, queries); the weighted sum over points runs over a middle axis with the queries
contiguous, and the levels add into one output. Nothing of levels*points is ever stacked. The
answer is the same up to float rounding (tests/detectors/test_deformable_sampling.py).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

TRANSFORMERS_CLASS = "MultiScaleDeformableAttention"
"""The name transformers gives every copy of the module this one replaces."""


def sum_over_levels(
    value: torch.Tensor,
    shapes: list[tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Deformable attention's output (batch, queries, heads*dim).

    value (batch, sum of h*w, heads, dim); sampling_locations (batch, queries, heads, levels,
    points, 2) in [0, 1]; attention_weights (batch, queries, heads, levels, points)."""
    batch, _, heads, dim = value.shape
    queries, points = sampling_locations.shape[1], sampling_locations.shape[4]
    per_level = value.split([h * w for h, w in shapes], dim=1)
    grids = (2 * sampling_locations - 1).permute(0, 2, 3, 4, 1, 5)  # (batch, heads, levels, points, queries, 2)
    weights = attention_weights.permute(0, 2, 3, 4, 1)  # (batch, heads, levels, points, queries)
    out = None
    for level, (h, w) in enumerate(shapes):
        v = per_level[level].flatten(2).transpose(1, 2).reshape(batch * heads, dim, h, w)
        sampled = F.grid_sample(
            v, grids[:, :, level].flatten(0, 1), mode="bilinear", padding_mode="zeros", align_corners=False
        )  # (batch*heads, dim, points, queries)
        term = (sampled * weights[:, :, level].reshape(batch * heads, 1, points, queries)).sum(2)
        out = term if out is None else out + term
    assert out is not None, "deformable attention over no levels"
    return out.view(batch, heads * dim, queries).transpose(1, 2).contiguous()


class LevelSummedDeformableAttention(nn.Module):
    """Takes transformers' `MultiScaleDeformableAttention` call as it is (module doc)."""

    def forward(
        self,
        value: torch.Tensor,
        value_spatial_shapes: torch.Tensor,
        value_spatial_shapes_list: list[tuple[int, int]],
        level_start_index: torch.Tensor,
        sampling_locations: torch.Tensor,
        attention_weights: torch.Tensor,
        im2col_step: int,
    ) -> torch.Tensor:
        return sum_over_levels(value, value_spatial_shapes_list, sampling_locations, attention_weights)


def sum_levels_in_place(model: Any) -> int:
    """Put `LevelSummedDeformableAttention` where a model has transformers' module (it holds no
    weights); returns how many were replaced (0 for a model without deformable attention)."""
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child).__name__ == TRANSFORMERS_CLASS:
                setattr(parent, name, LevelSummedDeformableAttention())
                swapped += 1
    return swapped
