"""How the image feature modulates the attention context of the cGRU decoder (eq. 15-16).

A fusion has two halves so that the decoder's time loop stays the same for every fusion:
``precompute`` runs once per sentence (its result is cached between incremental decoding
steps), ``forward`` runs at every target step on the attention context c'_t.
"""

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn


class VisualFusion(nn.Module, ABC):
    """Base class: combine the context vector c'_t with the sentence's visual feature v.

    Subclasses are built as ``Fusion(visual_feature_dim, context_dim)``. ``forward`` broadcasts
    over positions. ``linear_in_context`` says that ``forward`` is linear in the context: the
    fused cGRU decoder needs that, since it applies the fusion to every annotation S_s
    (``precomputed`` unsqueezed to B x 1 x ...) instead of to c'_t.
    """

    linear_in_context = False
    uses_image = True

    @abstractmethod
    def precompute(self, visual_features: Tensor) -> Tensor | None:
        """Per-sentence part (B x D or B x K x D features in); None if the fusion needs none."""

    @abstractmethod
    def forward(self, context: Tensor, precomputed: Tensor | None) -> Tensor:
        """The fused context (B x context_dim) of one target step."""


class NoVisualFusion(VisualFusion):
    """The text-only ("no v") ablation: c_t = W^c c'_t, the feature is ignored."""

    linear_in_context = True
    uses_image = False

    def __init__(self, visual_feature_dim: int, context_dim: int) -> None:
        super().__init__()

    def precompute(self, visual_features: Tensor | None) -> Tensor | None:
        return None

    def forward(self, context: Tensor, precomputed: Tensor | None) -> Tensor:
        return context


class ContextMultiplicativeFusion(VisualFusion):
    """Eq. (15)-(16): i = tanh(W^feat v), c_t = W^c (c'_t * i); spatial features are averaged."""

    linear_in_context = True

    def __init__(self, visual_feature_dim: int, context_dim: int) -> None:
        super().__init__()
        self.feature_proj = nn.Linear(visual_feature_dim, context_dim)

    def precompute(self, visual_features: Tensor) -> Tensor | None:
        if visual_features.dim() == 3:
            visual_features = visual_features.mean(dim=1)
        return torch.tanh(self.feature_proj(visual_features))

    def forward(self, context: Tensor, precomputed: Tensor | None) -> Tensor:
        return context * precomputed


VISUAL_FUSIONS = {"none": NoVisualFusion, "ctx-mul": ContextMultiplicativeFusion}


def build_visual_fusion(name: str, visual_feature_dim: int, context_dim: int) -> VisualFusion:
    if name not in VISUAL_FUSIONS:
        raise ValueError(f"unknown --visual-fusion {name!r}; choose from {sorted(VISUAL_FUSIONS)}")
    return VISUAL_FUSIONS[name](visual_feature_dim, context_dim)
