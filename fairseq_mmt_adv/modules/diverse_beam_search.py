"""fairseq 0.12's diverse beam search, mended for every batch but the first.

``DiverseBeamSearch`` keeps the overlap between beam groups in ``group_overlap``, one row per
sentence of the batch in the order of its first step, but from the second step on it indexes
those rows with ``original_batch_idxs``, which ``SequenceGenerator`` fills with the sentences'
*dataset* ids (``sample["id"]``). In the first batch ids and rows coincide; in any other batch
the ids run past the rows and beam search stops with an ``IndexError``. Here the ids are mapped
back to the rows of the first step before fairseq's step runs.
"""

import torch
from fairseq.search import DiverseBeamSearch
from torch import Tensor


class DiverseBeamSearchByRow(DiverseBeamSearch):
    """``DiverseBeamSearch`` whose overlap rows are found by sentence, not by dataset id."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.first_step_ids: Tensor | None = None

    @torch.jit.unused
    def step(self, step, lprobs, scores, prev_output_tokens=None, original_batch_idxs=None):
        if original_batch_idxs is not None:
            if step == 0:
                self.first_step_ids = original_batch_idxs.clone()
            # row of each remaining sentence among the first step's (ids are unique in a batch)
            matches = original_batch_idxs.unsqueeze(1) == self.first_step_ids.unsqueeze(0)
            original_batch_idxs = matches.int().argmax(dim=1)
        return super().step(step, lprobs, scores, prev_output_tokens, original_batch_idxs)
