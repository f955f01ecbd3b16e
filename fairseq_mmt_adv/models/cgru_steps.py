"""The two implementations of the cGRU decoder's time loop (``--cgru-implementation``).

Each owns both halves of its work: ``precompute`` adds its per-sentence tensors to the decoder
state (cached between incremental decoding steps), ``run`` takes the target steps. Both compute
the same function with the same parameters (tested in float64), so a checkpoint decodes the
same with either.

* ``reference`` follows eq. (11)-(16) step by step.
* ``fused`` moves the linear maps that follow the attention out of the loop. The attention
  weights sum to one and the fusion is linear in the context, so GRU2's input gates are
  ``W_ih (W^c (c'_t * i) + b^c) + b_ih = sum_s a_ts [W_ih (W^c (S_s * i) + b^c) + b_ih]``: the
  bracket is computed once per source position, and h'_t goes through W^h and GRU2's W_hh in
  one product.
"""

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Steps = tuple[list[Tensor], list[Tensor], Tensor]  # outputs h_t, attention a_t, last h_t


def gru_step(input_gates: Tensor, hidden: Tensor, cell: nn.GRUCell) -> Tensor:
    """One step of ``cell`` whose input projection W_ih x + b_ih was computed beforehand."""
    return gru_update(input_gates, F.linear(hidden, cell.weight_hh, cell.bias_hh), hidden)


def gru_update(input_gates: Tensor, hidden_gates: Tensor, hidden: Tensor) -> Tensor:
    """A GRU cell's new state from W_ih x + b_ih, W_hh h + b_hh and h (r, z, n gate order)."""
    in_r, in_z, in_n = input_gates.chunk(3, dim=-1)
    hid_r, hid_z, hid_n = hidden_gates.chunk(3, dim=-1)
    reset = torch.sigmoid(in_r + hid_r)
    update = torch.sigmoid(in_z + hid_z)
    candidate = torch.tanh(in_n + reset * hid_n)
    return candidate + update * (hidden - candidate)


class CGRUSteps(ABC):
    """An implementation of the decoder's loop; ``decoder`` is a ``ConditionalGRUDecoder``."""

    needs_linear_fusion = False

    @abstractmethod
    def precompute(self, decoder, encoder_out: dict, fused_visual: Tensor | None) -> dict:
        """Per-sentence tensors of the decoder state, from the encoder output and the
        fusion's per-sentence part."""

    @abstractmethod
    def run(self, decoder, input_gates: Tensor, state: dict, encoder_out: dict) -> Steps:
        """The steps over GRU1's input gates (B x T x 3H), starting from ``state``."""


class ReferenceSteps(CGRUSteps):
    """Eq. (11)-(16) as written, one target step at a time."""

    def precompute(self, decoder, encoder_out: dict, fused_visual: Tensor | None) -> dict:
        return {} if fused_visual is None else {"visual": fused_visual}

    def run(self, decoder, input_gates: Tensor, state: dict, encoder_out: dict) -> Steps:
        annotations, padding_mask = encoder_out["annotations"], encoder_out["padding_mask"]
        hidden, keys, fused_visual = state["hidden"], state["keys"], state.get("visual")
        outputs, attentions = [], []
        for step_gates in input_gates.unbind(1):
            query = gru_step(step_gates, hidden, decoder.gru1)  # h'_t
            context, weights = decoder.attention(query, annotations, keys, padding_mask)
            context = decoder.context_proj(decoder.fusion(context, fused_visual))  # c_t
            hidden = decoder.gru2(context, query)  # h_t
            outputs.append(hidden)
            attentions.append(weights)
        return outputs, attentions, hidden


class FusedSteps(CGRUSteps):
    """GRU2's input gates as a_t-weighted sums of per-position gates (``context_gates``), and
    one product for 2 W^h h'_t and GRU2's W_hh h'_t."""

    needs_linear_fusion = True

    def precompute(self, decoder, encoder_out: dict, fused_visual: Tensor | None) -> dict:
        per_position = None if fused_visual is None else fused_visual.unsqueeze(1)
        fused = decoder.context_proj(decoder.fusion(encoder_out["annotations"], per_position))
        return {"context_gates": F.linear(fused, decoder.gru2.weight_ih, decoder.gru2.bias_ih)}

    def run(self, decoder, input_gates: Tensor, state: dict, encoder_out: dict) -> Steps:
        padding_mask = encoder_out["padding_mask"]
        hidden, keys, context_gates = state["hidden"], state["keys"], state["context_gates"]
        split = [keys.size(-1), 3 * decoder.hidden_size]
        gru2 = decoder.gru2
        # 2 W^h as in ConditionalAttention.project_query: doubling is exact in floating point
        query_weight = torch.cat([2 * decoder.attention.query_proj.weight, gru2.weight_hh])
        query_bias = torch.cat([gru2.bias_hh.new_zeros(split[0]), gru2.bias_hh])
        outputs, attentions = [], []
        # unbind, not input_gates[:, t]: the backward of each index would fill a zero tensor of
        # input_gates' size; unbind's stacks the steps' gradients once
        for step_gates in input_gates.unbind(1):
            query = gru_step(step_gates, hidden, decoder.gru1)  # h'_t
            projected = F.linear(query, query_weight, query_bias)
            projected_query, hidden_gates = projected.split(split, dim=1)
            weights = decoder.attention.weights(projected_query, keys, padding_mask)
            gates = torch.bmm(weights.unsqueeze(1), context_gates).squeeze(1)  # W_ih c_t + b_ih
            hidden = gru_update(gates, hidden_gates, query)  # h_t
            outputs.append(hidden)
            attentions.append(weights)
        return outputs, attentions, hidden


IMPLEMENTATIONS = {"fused": FusedSteps, "reference": ReferenceSteps}
CGRU_IMPLEMENTATIONS = tuple(IMPLEMENTATIONS)


def build_steps(name: str, fusion) -> CGRUSteps:
    """The implementation ``name``, checked against the fusion it will run with."""
    if name not in IMPLEMENTATIONS:
        raise ValueError(
            f"unknown --cgru-implementation {name!r}; choose from {list(CGRU_IMPLEMENTATIONS)}"
        )
    steps = IMPLEMENTATIONS[name]()
    if steps.needs_linear_fusion and not fusion.linear_in_context:
        raise ValueError(
            f"--cgru-implementation {name} needs a fusion that is linear in the context; "
            f"{type(fusion).__name__} is not: use --cgru-implementation reference"
        )
    return steps
