"""A binarized split decoded with its own images or with another sentence's: what
``fairseq-generate`` (with and without ``--shuffle-visual-features``) does, through the
translator, so that one loaded model decodes the split with several sets of features.

Hypotheses and references come as the project's scorer takes them: tokenized, BPE removed.
"""

import logging
from dataclasses import dataclass

import numpy as np
import torch

from fairseq_mmt_adv.data.visual_features import VisualFeatureDataset
from fairseq_mmt_adv.evaluation.common import EvaluationInputError
from fairseq_mmt_adv.tasks.multimodal_translation import INCONGRUENT_IMAGES_SEED

logger = logging.getLogger("fairseq_mmt_adv.evaluate")


@dataclass
class Split:
    name: str
    sources: list[torch.Tensor]  # token ids, end of sentence included
    references: list[str]  # tokenized, BPE removed
    features: VisualFeatureDataset | None  # None: the model takes no image

    def __len__(self) -> int:
        return len(self.sources)

    def congruent(self) -> np.ndarray | None:
        """Each sentence's own image (raw features)."""
        return None if self.features is None else np.asarray(self.features.array)

    def incongruent(self, permutation: int) -> np.ndarray | None:
        """The images of permutation ``permutation`` (0, 1, ...): the first is the one of
        ``--shuffle-visual-features`` (seed ``INCONGRUENT_IMAGES_SEED``), the next ones take
        the following seeds."""
        if self.features is None:
            return None
        shuffled = VisualFeatureDataset(
            self.features.path, len(self), shuffle_seed=INCONGRUENT_IMAGES_SEED + permutation
        )
        order = shuffled.row_of_sentence
        kept = int((order == np.arange(len(order))).sum())
        if kept:
            logger.info(f"permutation {permutation}: {kept} sentences keep their own image")
        return np.asarray(self.features.array)[order]


def text(translator, tokens: torch.Tensor, post_process: str | None) -> str:
    """Tokens as tokenized text with BPE removed (``--remove-bpe`` or the model's BPE)."""
    return translator.remove_bpe(translator.tgt_dict.string(tokens, post_process))


def load_split(translator, split: str, post_process: str | None) -> Split:
    """The sentences of ``split`` in DATA, with its features when the model takes images."""
    task = translator.task
    try:
        task.load_dataset(split)
    except FileNotFoundError as error:
        raise EvaluationInputError(f"--gen-subset {split}: {error}") from error
    dataset = task.dataset(split)
    pairs = dataset.dataset  # fairseq's LanguagePairDataset
    if pairs.tgt is None:
        raise EvaluationInputError(
            f"--gen-subset {split} of {task.cfg.data} has no target side: the references are needed"
        )
    sources = [pairs.src[i] for i in range(len(pairs))]
    references = [text(translator, pairs.tgt[i], post_process) for i in range(len(pairs))]
    features = dataset.features if translator.uses_image else None
    if translator.uses_image and features is None:
        raise EvaluationInputError(
            f"this model fuses the image but {split} has no features: give --visual-features DIR"
        )
    return Split(split, sources, references, features)


def decode(translator, sources, features: np.ndarray | None, beam: int, post_process) -> list:
    """The best hypothesis of each source (token ids) with ``features`` (row i: source i)."""
    hypotheses = translator.generate(sources, beam=beam, features=features)
    return [text(translator, hypos[0]["tokens"], post_process) for hypos in hypotheses]
