"""How the image feature enters a Transformer encoder's output (``transformer_mmt``).

A fusion maps the text encoder's output H (T x B x C) and the sentence's feature v (B x D
pooled, or B x K x D for K image regions) to the H' that the decoder attends to, so the image
rides in the encoder output through beam search and ensembles.
"""

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from fairseq.modules import MultiheadAttention
from torch import Tensor, nn


def xavier_linear(in_features: int, out_features: int) -> nn.Linear:
    """A linear layer initialized as fairseq's Transformer initializes its own."""
    layer = nn.Linear(in_features, out_features)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.constant_(layer.bias, 0.0)
    return layer


class EncoderFusion(nn.Module, ABC):
    """Base class, built as ``Fusion(visual_feature_dim, embed_dim, cfg)``."""

    uses_image = True

    @abstractmethod
    def forward(self, encoder_out: Tensor, visual_features: Tensor | None) -> Tensor:
        """H' (T x B x C) from H (T x B x C) and v."""


class NoEncoderFusion(EncoderFusion):
    """The text-only model: H' = H, and no feature is needed."""

    uses_image = False

    def __init__(self, visual_feature_dim: int, embed_dim: int, cfg=None) -> None:
        super().__init__()

    def forward(self, encoder_out: Tensor, visual_features: Tensor | None) -> Tensor:
        return encoder_out


class GatedFusion(EncoderFusion):
    """Gated fusion (Wu et al., 2021): H' = H + Λ ⊙ W v, Λ = sigmoid(W_λ [H; W v]).

    W v is one vector per sentence (spatial features are averaged first), so W_λ's half that
    reads it runs once per sentence instead of at every position: W_λ [H; W v] =
    W_λ^H H + (W_λ^v W v + b_λ), the same function without the T x B x 2C concatenation.
    """

    def __init__(self, visual_feature_dim: int, embed_dim: int, cfg=None) -> None:
        super().__init__()
        self.feature_proj = xavier_linear(visual_feature_dim, embed_dim)  # W
        self.gate_proj = xavier_linear(2 * embed_dim, embed_dim)  # W_λ on [H; W v]

    def forward(self, encoder_out: Tensor, visual_features: Tensor | None) -> Tensor:
        if visual_features.dim() == 3:
            visual_features = visual_features.mean(dim=1)
        image = self.feature_proj(visual_features.to(encoder_out.dtype))  # B x C
        text_weight, image_weight = self.gate_proj.weight.chunk(2, dim=1)
        image_gate = F.linear(image, image_weight, self.gate_proj.bias)  # B x C
        gate = torch.sigmoid(F.linear(encoder_out, text_weight) + image_gate)  # Λ
        return encoder_out + gate * image


class SelectiveAttentionFusion(EncoderFusion):
    """Selective attention (Li et al., 2022) over the K image regions:
    A = Attention(Q = H, K = V = W v_{1..K}), λ = sigmoid(W_λ [H; A]), H' = (1 - λ) ⊙ H + λ ⊙ A.

    Pooled (B x D) features are one region.
    """

    def __init__(self, visual_feature_dim: int, embed_dim: int, cfg=None) -> None:
        super().__init__()
        heads = getattr(cfg, "selective_attention_heads", 1)
        dropout = getattr(cfg, "attention_dropout", 0.0)
        self.feature_proj = xavier_linear(visual_feature_dim, embed_dim)  # W
        self.attention = MultiheadAttention(
            embed_dim, heads, dropout=dropout, encoder_decoder_attention=True
        )
        self.gate_proj = xavier_linear(2 * embed_dim, embed_dim)  # W_λ

    def forward(self, encoder_out: Tensor, visual_features: Tensor | None) -> Tensor:
        regions = visual_features.unsqueeze(1) if visual_features.dim() == 2 else visual_features
        keys = self.feature_proj(regions.to(encoder_out.dtype)).transpose(0, 1)  # K x B x C
        attended, _ = self.attention(
            query=encoder_out, key=keys, value=keys, need_weights=False, static_kv=True
        )
        gate = torch.sigmoid(self.gate_proj(torch.cat([encoder_out, attended], dim=-1)))
        return encoder_out + gate * (attended - encoder_out)


ENCODER_FUSIONS = {
    "none": NoEncoderFusion,
    "gated": GatedFusion,
    "selective-attn": SelectiveAttentionFusion,
}


def build_encoder_fusion(name: str, visual_feature_dim: int, embed_dim: int, cfg=None):
    if name not in ENCODER_FUSIONS:
        raise ValueError(
            f"unknown --visual-fusion {name!r} for transformer_mmt; choose from "
            f"{sorted(ENCODER_FUSIONS)}"
        )
    return ENCODER_FUSIONS[name](visual_feature_dim, embed_dim, cfg)
