"""Test-only user dir: the plugin plus a criterion that records parameter checksums per step.

Each training forward appends, for this rank, checksums of the model, of G and of the critic D
(after its updates) to ``$DP_PROBE_DIR/rank<R>.jsonl``; the data-parallel test compares ranks.
"""

import json
import os

import torch
from fairseq.criterions import register_criterion
from fairseq.distributed import utils as distributed_utils

import fairseq_mmt_adv  # noqa: F401  (registers the task, model and criterion)
from fairseq_mmt_adv.criterions.adversarial_reconstruction import (
    AdversarialReconstructionCriterion,
    AdversarialReconstructionCriterionConfig,
)


def checksum(tensors) -> list[float]:
    """Sum and weighted sum in float64: differs if any parameter differs."""
    flat = torch.cat([t.detach().double().reshape(-1) for t in tensors])
    weights = torch.arange(1, flat.numel() + 1, dtype=torch.float64).remainder(97)
    return [flat.sum().item(), (flat * weights).sum().item()]


@register_criterion(
    "probed_adversarial_reconstruction", dataclass=AdversarialReconstructionCriterionConfig
)
class ProbedAdversarialReconstructionCriterion(AdversarialReconstructionCriterion):
    def forward(self, model, sample, reduce=True):
        result = super().forward(model, sample, reduce)
        if model.training:
            record = {
                "model": checksum(model.parameters()),
                "generator": checksum(self.generator.parameters()),
                "critic": checksum(self.critic.critic.parameters()),
            }
            distributed = torch.distributed.is_initialized()
            rank = distributed_utils.get_data_parallel_rank() if distributed else 0
            path = os.path.join(os.environ["DP_PROBE_DIR"], f"rank{rank}.jsonl")
            with open(path, "a") as log:
                log.write(json.dumps(record) + "\n")
        return result
