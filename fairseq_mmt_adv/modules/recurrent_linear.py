"""A linear map applied at every step of a recurrence, with one weight gradient for all steps.

Autograd differentiates a recurrence step by step: for ``y_t = W x_t + b`` it computes
``dW += g_t^T x_t`` at every step, a product over only the B rows of one step whose output is as
large as W, followed by an addition of W's size. With B = 32 and the cGRU's 512 x 2560 and
512 x 1536 recurrent weights, these per-step products and additions took about 4x as long as
one product over all T x B rows does (``docs/PERFORMANCE.md``). Here each step's backward
computes only ``dx_t = g_t W`` and keeps ``(g_t, x_t)``; ``dW = G^T X`` and ``db = sum G`` are
computed once, when the backward pass has gone through every step.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd import Function


class _StepGradients:
    """The (output gradient, input) pairs of the steps, in the order backward reaches them."""

    def __init__(self) -> None:
        self.grads: list[Tensor] = []
        self.inputs: list[Tensor] = []

    def pop_all(self) -> tuple[Tensor, Tensor] | None:
        """All pairs stacked (rows x out, rows x in), and the store emptied; None if empty."""
        if not self.grads:
            return None
        grads, inputs = torch.cat(self.grads), torch.cat(self.inputs)
        self.grads, self.inputs = [], []
        return grads, inputs


class _SharedParameters(Function):
    """Identity on (weight, bias) whose backward computes their gradients over all steps."""

    @staticmethod
    def forward(ctx: Any, weight: Tensor, bias: Tensor, store: _StepGradients):
        ctx.store = store
        ctx.dtypes = weight.dtype, bias.dtype
        ctx.set_materialize_grads(False)  # only the steps use the outputs, and they pass None
        return weight.view_as(weight), bias.view_as(bias)

    @staticmethod
    def backward(ctx: Any, *unused: Tensor | None):
        stacked = ctx.store.pop_all()
        if stacked is None:  # no step reached the loss
            return None, None, None
        grads, inputs = stacked
        weight_dtype, bias_dtype = ctx.dtypes
        weight_grad = grads.t().mm(inputs.to(grads.dtype)).to(weight_dtype)
        return weight_grad, grads.sum(0).to(bias_dtype), None


class _StepLinear(Function):
    """``F.linear(x, weight, bias)`` whose backward returns dx only and stores (g, x)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor, store: _StepGradients):
        ctx.save_for_backward(x, weight)
        ctx.store = store
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad: Tensor):
        x, weight = ctx.saved_tensors
        ctx.store.grads.append(grad.reshape(-1, grad.size(-1)))
        ctx.store.inputs.append(x.reshape(-1, x.size(-1)))
        grad_x = grad.matmul(weight.to(grad.dtype)).to(x.dtype)
        return grad_x, None, None, None


def recurrent_linear(weight: Tensor, bias: Tensor) -> Callable[[Tensor], Tensor]:
    """``x -> F.linear(x, weight, bias)`` for use at every step of one recurrence.

    When autograd records, ``weight`` and ``bias`` (any tensors, leaves or not) receive their
    gradients in one product over all the steps that reached the loss. Call it once per
    forward pass: the steps of one call share one store of gradients.
    """
    if not (torch.is_grad_enabled() and (weight.requires_grad or bias.requires_grad)):
        return partial(F.linear, weight=weight, bias=bias)
    store = _StepGradients()
    shared_weight, shared_bias = _SharedParameters.apply(weight, bias, store)
    return lambda x: _StepLinear.apply(x, shared_weight, shared_bias, store)
