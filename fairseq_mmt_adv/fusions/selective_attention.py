"""``--visual-fusion selective-attn``: selective attention over image regions (Li et al., 2022)."""

import torch
from fairseq.modules import MultiheadAttention
from torch import Tensor

from fairseq_mmt_adv.fusions.gated import xavier_linear
from fairseq_mmt_adv.fusions.registry import ENCODER_OUTPUT, Fusion, register_fusion

# The gate's bias at the identity: sigmoid(-10) = 4.5e-5, so H' = H up to that share of (A - H).
# λ = sigmoid(.) > 0 leaves no exact identity, and a lower bias closes the gate for good: the
# gradients reaching W_λ scale with sigmoid'(bias), and below Adam's eps (1e-8) its steps vanish.
# Measured on the demo corpus (docs/FINETUNING.md): with -30 the fine-tuned model stayed at
# chance on the ambiguous words for all 375 updates; with -10 it reached 95 % after 150.
IDENTITY_GATE_BIAS = -10.0


@register_fusion("selective-attn", sites=(ENCODER_OUTPUT,), identity="approximate")
class SelectiveAttentionFusion(Fusion):
    """A = Attention(Q = H, K = V = W v_{1..K}), λ = sigmoid(W_λ [H; A]), H' = (1 - λ) ⊙ H + λ ⊙ A.

    Pooled (B x D) features are one region. Identity (approximate): W_λ = 0 and its bias
    :data:`IDENTITY_GATE_BIAS` make λ = sigmoid(-10) everywhere, so |H' - H| <= 4.6e-5 |A - H|.
    """

    def __init__(self, visual_feature_dim: int, model_dim: int, cfg=None) -> None:
        super().__init__()
        heads = getattr(cfg, "selective_attention_heads", 1)
        dropout = getattr(cfg, "attention_dropout", 0.0)
        self.feature_proj = xavier_linear(visual_feature_dim, model_dim)  # W
        self.attention = MultiheadAttention(
            model_dim, heads, dropout=dropout, encoder_decoder_attention=True
        )
        self.gate_proj = xavier_linear(2 * model_dim, model_dim)  # W_λ

    def forward(self, encoder_out: Tensor, visual_features: Tensor | None) -> Tensor:
        regions = visual_features.unsqueeze(1) if visual_features.dim() == 2 else visual_features
        keys = self.feature_proj(regions.to(encoder_out.dtype)).transpose(0, 1)  # K x B x C
        attended, _ = self.attention(
            query=encoder_out, key=keys, value=keys, need_weights=False, static_kv=True
        )
        gate = torch.sigmoid(self.gate_proj(torch.cat([encoder_out, attended], dim=-1)))
        return encoder_out + gate * (attended - encoder_out)

    def init_identity(self) -> None:
        with torch.no_grad():
            self.gate_proj.weight.zero_()
            self.gate_proj.bias.fill_(IDENTITY_GATE_BIAS)
