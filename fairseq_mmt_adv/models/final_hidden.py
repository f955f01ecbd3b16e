"""hT, the decoder state that the ``adversarial_reconstruction`` criterion reconstructs v from.

Every model of the plugin returns ``extra["final_hidden"]`` from its decoder: each sentence's
top-layer state at its own last real target position (the published code of the paper averaged
the states over padded positions too). Every model also says how large that state is
(``final_hidden_size``), so that the criterion sizes G and D from the model it trains and a new
architecture needs no change in the criterion.
"""

import torch
from torch import Tensor


def last_real_state(
    hidden_states: Tensor, prev_output_tokens: Tensor, padding_idx: int, incremental: bool
) -> Tensor:
    """hT (B x H) from the decoder's states (B x T x H).

    Teacher-forced, it is the state at each sentence's last non-padding position of
    ``prev_output_tokens`` (right or left padding); in incremental decoding, the state of the
    step just taken.
    """
    if incremental:
        return hidden_states[:, -1]
    real = prev_output_tokens.ne(padding_idx)
    positions = torch.arange(real.size(1), device=real.device).expand_as(real)
    last = positions.masked_fill(~real, -1).amax(dim=1).clamp_min(0)
    index = last.view(-1, 1, 1).expand(-1, 1, hidden_states.size(2))
    return hidden_states.gather(1, index).squeeze(1)
