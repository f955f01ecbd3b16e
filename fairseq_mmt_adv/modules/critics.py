"""Wasserstein critics D and the WGAN-GP gradient penalty (paper eq. 5, Appendix B)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn


def _mlp(in_dim: int, hidden_sizes: Sequence[int]) -> nn.Sequential:
    """Linear -> ReLU layers of ``hidden_sizes``, then a linear scalar output."""
    layers: list[nn.Module] = []
    for size in hidden_sizes:
        layers += [nn.Linear(in_dim, size), nn.ReLU()]
        in_dim = size
    layers.append(nn.Linear(in_dim, 1))
    return nn.Sequential(*layers)


class LatentCritic(nn.Module):
    """Q-WAAE critic on latent codes: ``o = W^adv h`` (Appendix B); ReLU layers optional."""

    def __init__(self, hidden_dim: int, hidden_sizes: Sequence[int] = ()) -> None:
        super().__init__()
        self.net = _mlp(hidden_dim, hidden_sizes)

    def forward(self, latent: Tensor) -> Tensor:
        """Score each row of ``latent`` (B x H); returns B."""
        return self.net(latent).squeeze(-1)


class ConditionalFeatureCritic(nn.Module):
    """G-WGAN critic on ``[v, hT]`` (eqs. 19-21: (D+H) -> 1024 -> 512 -> 1 with ReLU)."""

    def __init__(
        self, feature_dim: int, hidden_dim: int, hidden_sizes: Sequence[int] = (1024, 512)
    ) -> None:
        super().__init__()
        self.net = _mlp(feature_dim + hidden_dim, hidden_sizes)

    def forward(self, features: Tensor, condition: Tensor) -> Tensor:
        """Score features (B x D) given the decoder state ``condition`` (B x H); returns B."""
        return self.net(torch.cat([features, condition], dim=-1)).squeeze(-1)


def critic_score(critic: Callable[..., Tensor], x: Tensor, condition: Tensor | None) -> Tensor:
    """``critic(x)``, or ``critic(x, condition)`` for a conditional critic."""
    return critic(x) if condition is None else critic(x, condition)


def gradient_penalty(
    critic: Callable[..., Tensor],
    x_a: Tensor,
    x_b: Tensor,
    condition: Tensor | None = None,
    eps: Tensor | None = None,
) -> Tensor:
    """Per-row WGAN-GP penalty ``(||grad_x D(x_hat)||_2 - 1)^2`` of eq. (5).

    ``x_hat = eps * x_a + (1 - eps) * x_b`` with one ``eps ~ U[0, 1]`` per row (B x 1) unless
    given. The gradient is taken with respect to ``x_hat`` only (``condition``, if any, is an
    extra critic input held fixed), with ``create_graph=True`` so that the penalty can be
    differentiated with respect to the critic's parameters. Returns a tensor of shape B.
    """
    if eps is None:
        eps = torch.rand(x_a.size(0), 1, dtype=x_a.dtype, device=x_a.device)
    x_hat = (eps * x_a + (1 - eps) * x_b).detach().requires_grad_(True)
    with torch.enable_grad():
        scores = critic_score(critic, x_hat, condition)
        (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    return (grad.norm(2, dim=-1) - 1) ** 2
