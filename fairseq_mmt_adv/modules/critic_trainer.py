"""The critic D's trainer: D and its own Adam, outside the module tree (WGAN-GP, eq. 5)."""

import copy
from collections.abc import Sequence
from typing import Any

import torch
from fairseq.distributed import utils as distributed_utils
from torch import Tensor

from fairseq_mmt_adv.modules.critics import MultilayerCritic, wgan_gp_terms


def _no_autocast(x: Tensor) -> torch.autocast:
    """Context that keeps the critic in float32 even under ``--amp``."""
    return torch.autocast(device_type=x.device.type, enabled=False)


class CriticTrainer:
    """Owns the critic D and its Adam optimizer, outside any ``nn.Module`` tree.

    Being a plain object, it keeps D out of ``criterion.parameters()``: fairseq's optimizer
    neither updates nor clips D, and DDP does not reduce its gradients. D stays in float32; its
    Adam is PyTorch's fused one (one kernel per parameter instead of about eight passes over
    D's 2.6M first-layer weights).
    The gradient penalty interpolates ``eps * real + (1 - eps) * fake`` (Algorithm 1's
    ``v_hat = v eps + v' (1 - eps)``), or ``eps * fake + (1 - eps) * real`` when ``eps_on_fake``
    (Algorithm 2's ``h_hat = hT eps + h' (1 - eps)``).
    """

    def __init__(
        self,
        critic: MultilayerCritic,
        lr: float,
        betas: tuple[float, float],
        lambda_gp: float,
        eps_on_fake: bool,
    ) -> None:
        self.critic = critic.float()
        self.optimizer = torch.optim.Adam(critic.parameters(), lr=lr, betas=betas, fused=True)
        self.lambda_gp = lambda_gp
        self.eps_on_fake = eps_on_fake
        self._synced = False

    @property
    def device(self) -> torch.device:
        return next(self.critic.parameters()).device

    def follow(self, hidden: Tensor) -> None:
        """Move D and its Adam moments to the device of ``hidden`` (hT) if they are elsewhere,
        keeping float32: D is no submodule, so ``criterion.to()`` leaves it where it is."""
        if hidden.device != self.device:
            self.to_device(hidden.device)

    def to_device(self, device: torch.device) -> None:
        """Move D and its Adam moments to ``device``, keeping float32."""
        self.critic.to(device=device)
        # Adam casts its state to its parameters' device when loading
        self.optimizer.load_state_dict(self.optimizer.state_dict())

    def score_frozen(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        """D's scores as a function of its inputs only: gradients reach ``x``/``condition``,
        never D's parameters (they are detached)."""
        params = {name: p.detach() for name, p in self.critic.named_parameters()}

        def frozen(*inputs: Tensor) -> Tensor:
            return torch.func.functional_call(self.critic, params, inputs)

        with _no_autocast(x):
            return frozen(x.float(), None if condition is None else condition.float())

    def estimate(self, real: Tensor, fake: Tensor, condition: Tensor | None = None) -> Tensor:
        """Wasserstein estimate ``mean D(real) - mean D(fake)``, without gradients."""
        with torch.no_grad():
            return (
                self.score_frozen(real, condition).mean()
                - self.score_frozen(fake, condition).mean()
            )

    def step(
        self, real: Tensor, fake: Tensor, condition: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One WGAN-GP update of D (eq. 5), minimising
        ``mean D(fake) - mean D(real) + lambda_gp * mean_b (||grad D(x_hat_b)|| - 1)^2``.

        Inputs are detached and cast to float32, and gradients are taken with
        ``torch.autograd.grad`` for D's parameters only, so nothing is written into the
        ``.grad`` of the model or G. Under data parallelism D's gradients are averaged over
        the data-parallel ranks first. Returns (critic loss, Wasserstein estimate, mean
        penalty), all measured before the update.
        """
        real, fake = real.detach().float(), fake.detach().float()
        condition = None if condition is None else condition.detach().float()
        params = list(self.critic.parameters())
        self._sync_across_ranks()
        with torch.enable_grad(), _no_autocast(real):
            x_a, x_b = (fake, real) if self.eps_on_fake else (real, fake)
            scores_a, scores_b, penalty = wgan_gp_terms(self.critic, x_a, x_b, condition)
            real_scores, fake_scores = scores_a, scores_b
            if self.eps_on_fake:
                real_scores, fake_scores = fake_scores, real_scores
            wasserstein = real_scores.mean() - fake_scores.mean()
            penalty = penalty.mean()
            loss = self.lambda_gp * penalty - wasserstein
            grads = torch.autograd.grad(loss, params)
        self._average_across_ranks(grads)
        for param, grad in zip(params, grads, strict=True):
            param.grad = grad
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach(), wasserstein.detach(), penalty.detach()

    def _sync_across_ranks(self) -> None:
        """Once, before the first update: copy D from the first data-parallel rank."""
        if self._synced:
            return
        self._synced = True
        if distributed_utils.get_data_parallel_world_size() == 1:
            return
        group = distributed_utils.get_data_parallel_group()
        source = torch.distributed.get_global_rank(group, 0)
        for tensor in self.critic.state_dict().values():
            torch.distributed.broadcast(tensor, src=source, group=group)

    @staticmethod
    def _average_across_ranks(grads: Sequence[Tensor]) -> None:
        """All-reduce (average) D's gradients in place over the data-parallel ranks."""
        world_size = distributed_utils.get_data_parallel_world_size()
        if world_size == 1:
            return
        flat = torch.cat([grad.reshape(-1) for grad in grads])
        distributed_utils.all_reduce(flat, distributed_utils.get_data_parallel_group())
        flat.div_(world_size)
        offset = 0
        for grad in grads:
            grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
            offset += grad.numel()

    def state_dict(self) -> dict[str, Any]:
        return {"critic": self.critic.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.critic.load_state_dict(state["critic"])
        # Adam keeps loaded tensors that already match (no copy): never alias the caller's
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
