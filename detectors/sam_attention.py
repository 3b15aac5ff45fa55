"""SAM's image-encoder attention with its relative-position bias folded into the query and key.

transformers' `SamVisionSdpaAttention` builds the decomposed relative-position bias (MViTv2) as a
(batch, heads, HW, HW) tensor and hands it to SDPA as a mask. For the four global-attention layers
of ViT-B at 1024 px that is 4096 x 4096 per head, made and read in separate elementwise kernels:
60 of 88 ms of GPU time per batch of 8 on an H200 (README, "What stands between 1.15 s and 1 s").
The bias is a sum of two narrow terms,

    bias[q, k] = rel_h[q, row(k)] + rel_w[q, col(k)],   rel_h[q, i] = q . R_h[row(q), i],

that is the dot product of [rel_h[q], rel_w[q]] with the one-hot [e_row(k), e_col(k)]. Appending
those H + W columns to the query (scaled beforehand) and to the key gives SDPA the same scores
with no mask at all, so it runs one fused attention kernel per layer and the bias is never
materialised. The answer is the same up to float rounding (tests/detectors/test_sam_attention.py).

`fold_relative_position(model)` swaps the encoder's attention modules in place, keeping their
weights; `SamParams.attention` chooses it per voter.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers.models.sam.modeling_sam import SamVisionAttention, SamVisionSdpaAttention

ALIGN = 8
"""Head dims that fused attention kernels take in half precision are multiples of 8."""


def key_positions(height: int, width: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One-hot row (HW, H) and column (HW, W) of each key of a height x width grid, row-major."""
    idx = torch.arange(height * width, device=like.device)
    rows = F.one_hot(idx // width, height).to(like.dtype)
    cols = F.one_hot(idx % width, width).to(like.dtype)
    return rows, cols


def folded_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    rel_h: torch.Tensor,
    rel_w: torch.Tensor,
    grid: tuple[int, int],
    scale: float,
    pad_value: bool,
) -> torch.Tensor:
    """softmax(scale * q.k + rel_h[q, row(k)] + rel_w[q, col(k)]) @ v, with no bias tensor.

    query, key, value: (B, heads, HW, C); rel_h: (B, heads, HW, H); rel_w: (B, heads, HW, W).
    `pad_value` widens the value to the folded head dim with zeros (and drops those columns from
    the output), for the kernels that take only one head dim for all three.
    """
    b, n, hw, c = query.shape
    rows, cols = key_positions(*grid, query)
    width = c + rows.shape[1] + cols.shape[1]
    pad = -width % ALIGN
    q = torch.cat([query * scale, rel_h, rel_w, query.new_zeros(b, n, hw, pad)], dim=-1)
    k = torch.cat([key, rows.expand(b, n, hw, -1), cols.expand(b, n, hw, -1), key.new_zeros(b, n, hw, pad)], dim=-1)
    v = F.pad(value, (0, width + pad - c)) if pad_value else value
    return F.scaled_dot_product_attention(q, k, v, scale=1.0)[..., :c]


class FoldedRelPosAttention(SamVisionSdpaAttention):
    """`SamVisionSdpaAttention` whose relative-position bias rides in the query and key (module doc)."""

    pad_value = False
    """Widen the value to the folded head dim. Off: on an H100 the encoder took 46.4 ms a batch of 8
    with the value as it is and 49.3 ms padded (transformers' form: 84.8 ms;
    benchmarks/results/sam_attention_h100.json)."""

    def forward(self, hidden_states: torch.Tensor, output_attentions: bool = False) -> tuple[torch.Tensor, None]:
        if not self.use_rel_pos:
            return super().forward(hidden_states, output_attentions)
        b, height, width, _ = hidden_states.shape
        n = self.num_attention_heads
        # (3, B, heads, HW, C), as transformers lays it out
        qkv = self.qkv(hidden_states).reshape(b, height * width, 3, n, -1).permute(2, 0, 3, 1, 4)
        query, key, value = qkv.unbind(0)
        grid_query = query.reshape(b, n, height, width, -1)
        rel_h = torch.einsum("bnhwc,hkc->bnhwk", grid_query, self.get_rel_pos(height, height, self.rel_pos_h)).reshape(
            b, n, height * width, height
        )
        rel_w = torch.einsum("bnhwc,wkc->bnhwk", grid_query, self.get_rel_pos(width, width, self.rel_pos_w)).reshape(
            b, n, height * width, width
        )
        out = folded_attention(query, key, value, rel_h, rel_w, (height, width), self.scale, self.pad_value)
        out = out.reshape(b, n, height, width, -1).permute(0, 2, 3, 1, 4).reshape(b, height, width, -1)
        return self.proj(out), None


def fold_relative_position(model: Any) -> int:
    """Give every relative-position attention of a SAM model's image encoder the folded forward.

    Swaps each module's class in place (its weights stay where they are); returns how many."""
    swapped = 0
    for module in model.modules():
        if isinstance(module, SamVisionAttention) and module.use_rel_pos:
            module.__class__ = FoldedRelPosAttention
            swapped += 1
    return swapped
