"""``--visual-fusion ctx-mul``: the paper's cGRU fusion of the attention context (eq. 15-16)."""

import torch
from torch import Tensor, nn

from fairseq_mmt_adv.fusions.registry import DECODER_CONTEXT, Fusion, register_fusion


@register_fusion("ctx-mul", sites=(DECODER_CONTEXT,), identity=None)
class ContextMultiplicativeFusion(Fusion):
    """i = tanh(W^feat v), c_t = W^c (c'_t * i); spatial features are averaged.

    No identity: tanh(W^feat v) = 1 would need infinite weights, so the text-only cGRU's function
    is not a point of this fusion's parameter space.
    """

    linear_in_context = True

    def __init__(self, visual_feature_dim: int, model_dim: int, cfg=None) -> None:
        super().__init__()
        self.feature_proj = nn.Linear(visual_feature_dim, model_dim)

    def precompute(self, visual_features: Tensor) -> Tensor:
        if visual_features.dim() == 3:
            visual_features = visual_features.mean(dim=1)
        return torch.tanh(self.feature_proj(visual_features))

    def forward(self, context: Tensor, precomputed: Tensor | None) -> Tensor:
        return context * precomputed
