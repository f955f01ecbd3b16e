"""``--visual-fusion none``: the text-only model, at either site; the feature is ignored."""

from torch import Tensor

from fairseq_mmt_adv.fusions.registry import (
    DECODER_CONTEXT,
    ENCODER_OUTPUT,
    Fusion,
    register_fusion,
)


@register_fusion("none", sites=(ENCODER_OUTPUT, DECODER_CONTEXT), identity="exact")
class NoFusion(Fusion):
    """H' = H (encoder output), c_t = W^c c'_t (the cGRU's "no v" ablation)."""

    uses_image = False
    linear_in_context = True

    def __init__(self, visual_feature_dim: int, model_dim: int, cfg=None) -> None:
        super().__init__()

    def precompute(self, visual_features: Tensor | None) -> None:
        return None

    def forward(self, fused: Tensor, visual: Tensor | None) -> Tensor:
        return fused

    def init_identity(self) -> None:
        """No parameters: the function is the text-only model's already."""
