"""Wasserstein critics D and the WGAN-GP terms (paper eq. 5, Appendix B)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class MultilayerCritic(nn.Module):
    """D on ``x`` (and an optional fixed ``condition`` appended to it): Linear -> ReLU layers of
    ``hidden_sizes``, then a linear scalar output. ``net[0]`` is the first, linear layer."""

    def __init__(self, input_dim: int, condition_dim: int, hidden_sizes: Sequence[int]) -> None:
        super().__init__()
        self.input_dim = input_dim
        layers: list[nn.Module] = []
        in_dim = input_dim + condition_dim
        for size in hidden_sizes:
            layers += [nn.Linear(in_dim, size), nn.ReLU()]
            in_dim = size
        layers.append(nn.Linear(in_dim, 1))
        self.net = nn.Sequential(*layers)

    def inputs(self, x: Tensor, condition: Tensor | None) -> Tensor:
        """The first layer's input: ``x``, or ``[x, condition]``."""
        return x if condition is None else torch.cat([x, condition], dim=-1)

    def forward(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        """Score each row of ``x`` (B x input_dim); returns B."""
        return self.net(self.inputs(x, condition)).squeeze(-1)


class LatentCritic(MultilayerCritic):
    """Q-WAAE critic on latent codes: ``o = W^adv h`` (Appendix B); ReLU layers optional."""

    def __init__(self, hidden_dim: int, hidden_sizes: Sequence[int] = ()) -> None:
        super().__init__(hidden_dim, 0, hidden_sizes)


class ConditionalFeatureCritic(MultilayerCritic):
    """G-WGAN critic on ``[v, hT]`` (eqs. 19-21: (D+H) -> 1024 -> 512 -> 1 with ReLU)."""

    def __init__(
        self, feature_dim: int, hidden_dim: int, hidden_sizes: Sequence[int] = (1024, 512)
    ) -> None:
        super().__init__(feature_dim, hidden_dim, hidden_sizes)


def wgan_gp_terms(
    critic: MultilayerCritic,
    x_a: Tensor,
    x_b: Tensor,
    condition: Tensor | None = None,
    eps: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """``D(x_a)``, ``D(x_b)`` and the per-row WGAN-GP penalty ``(||grad_x D(x_hat)||_2 - 1)^2``
    of eq. (5), each of shape B.

    ``x_hat = eps * x_a + (1 - eps) * x_b`` with one ``eps ~ U[0, 1]`` per row (B x 1) unless
    given. The gradient is taken with respect to ``x_hat`` only (``condition``, if any, is an
    extra input held fixed), with a graph, so the penalty can be differentiated with respect to
    D's parameters.

    D's first layer is linear, so its pre-activation at ``x_hat`` is the same interpolation of
    its pre-activations at ``x_a`` and ``x_b``: ``x_hat`` needs no pass through that layer, the
    largest of the critic (2560 x 1024 for G-WGAN), and ``grad_x D`` is the gradient at that
    pre-activation times the layer's weight. The interpolated pre-activation enters the graph
    as a leaf: the rest of D depends on it only through ReLU masks, whose derivative is zero.
    A linear D needs no gradient at all: ``grad_x D`` is its weight. The penalty and its
    parameter gradients are those of the textbook form (tested).
    """
    first, rest = critic.net[0], critic.net[1:]
    rows = x_a.size(0)
    if eps is None:
        eps = torch.rand(rows, 1, dtype=x_a.dtype, device=x_a.device)
    both = torch.cat([critic.inputs(x_a, condition), critic.inputs(x_b, condition)])
    pre_activation = first(both).view(2, rows, -1)
    scores = rest(pre_activation).squeeze(-1)
    if len(rest) == 0:  # a linear D (Q-WAAE's default): grad_x D is its weight, for every row
        grad_x = first.weight[:, : critic.input_dim].expand(rows, -1)
        return scores[0], scores[1], (grad_x.norm(2, dim=-1) - 1) ** 2
    with torch.enable_grad():
        pre_hat = (eps * pre_activation[0] + (1 - eps) * pre_activation[1]).detach()
        pre_hat.requires_grad_(True)
        (grad_pre,) = torch.autograd.grad(rest(pre_hat).sum(), pre_hat, create_graph=True)
        grad_x = (grad_pre @ first.weight)[:, : critic.input_dim]
    return scores[0], scores[1], (grad_x.norm(2, dim=-1) - 1) ** 2
