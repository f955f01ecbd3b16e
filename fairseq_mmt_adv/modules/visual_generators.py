"""Generators G that reconstruct visual features from the decoder's final state hT.

Paper section 3.1 (eq. 2, v' = G(hT)) and Appendix B.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class VisualFeatureGenerator(nn.Module):
    """Deterministic G of "Baseline + G" and Q-WAAE: ``v' = tanh(W^rec hT)`` (Appendix B)."""

    def __init__(self, hidden_dim: int, feature_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(hidden_dim, feature_dim)

    def forward(self, hidden: Tensor) -> Tensor:
        """Map ``hidden`` (B x H) to reconstructed features (B x D)."""
        return torch.tanh(self.proj(hidden))


class ConditionalVisualFeatureGenerator(nn.Module):
    """Conditional G of G-WGAN: ``v' = tanh(W^rec [z, hT])``, z ~ N(0, I) (section 4.1, App. B).

    Dropout on ``[z, hT]`` is a second source of stochasticity (section 4.1, after Isola et al.,
    2017); it is active in training mode only.
    """

    def __init__(self, hidden_dim: int, feature_dim: int, noise_dim: int, dropout: float) -> None:
        super().__init__()
        self.noise_dim = noise_dim
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(noise_dim + hidden_dim, feature_dim)

    def forward(self, hidden: Tensor, noise: Tensor | None = None) -> Tensor:
        """Map ``hidden`` (B x H) and ``noise`` (B x noise_dim, sampled if None) to B x D."""
        if noise is None:
            noise = hidden.new_empty(hidden.size(0), self.noise_dim).normal_()
        return torch.tanh(self.proj(self.dropout(torch.cat([noise, hidden], dim=-1))))
