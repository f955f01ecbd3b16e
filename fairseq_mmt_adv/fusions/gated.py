"""``--visual-fusion gated``: gated fusion of the encoder output (Wu et al., 2021)."""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fairseq_mmt_adv.fusions.registry import ENCODER_OUTPUT, Fusion, register_fusion


def xavier_linear(in_features: int, out_features: int) -> nn.Linear:
    """A linear layer initialized as fairseq's Transformer initializes its own."""
    layer = nn.Linear(in_features, out_features)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.constant_(layer.bias, 0.0)
    return layer


@register_fusion("gated", sites=(ENCODER_OUTPUT,), identity="exact")
class GatedFusion(Fusion):
    """H' = H + Λ ⊙ W v, Λ = sigmoid(W_λ [H; W v]).

    W v is one vector per sentence (spatial features are averaged first), so W_λ's half that
    reads it runs once per sentence instead of at every position: W_λ [H; W v] =
    W_λ^H H + (W_λ^v W v + b_λ), the same function without the T x B x 2C concatenation.
    Identity: W = 0 and its bias 0 make W v = 0, so H' = H exactly, and W still gets gradients
    (Λ > 0).
    """

    def __init__(self, visual_feature_dim: int, model_dim: int, cfg=None) -> None:
        super().__init__()
        self.feature_proj = xavier_linear(visual_feature_dim, model_dim)  # W
        self.gate_proj = xavier_linear(2 * model_dim, model_dim)  # W_λ on [H; W v]

    def forward(self, encoder_out: Tensor, visual_features: Tensor | None) -> Tensor:
        if visual_features.dim() == 3:
            visual_features = visual_features.mean(dim=1)
        image = self.feature_proj(visual_features.to(encoder_out.dtype))  # B x C
        text_weight, image_weight = self.gate_proj.weight.chunk(2, dim=1)
        image_gate = F.linear(image, image_weight, self.gate_proj.bias)  # B x C
        gate = torch.sigmoid(F.linear(encoder_out, text_weight) + image_gate)  # Λ
        return encoder_out + gate * image

    def init_identity(self) -> None:
        with torch.no_grad():
            self.feature_proj.weight.zero_()
            self.feature_proj.bias.zero_()
