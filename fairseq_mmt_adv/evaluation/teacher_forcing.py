"""The log-probability that a model gives a given translation of a source and its image, by
teacher forcing: fairseq's ``SequenceScorer`` (what ``fairseq-generate --score-reference``
runs) over batches that carry each line's raw image features, as the translator's do.

Candidates come in raw; the target side goes through the model's tokenizer (for the target
language) and BPE, as the source does through :meth:`MultimodalTranslator.encode`.
"""

import copy
import logging

import numpy as np
import torch

logger = logging.getLogger("fairseq_mmt_adv.evaluate")


def target_encoder(translator):
    """A function from a raw target sentence to its tokens (with end of sentence): the model's
    tokenizer, set to the target language, and its BPE."""
    from fairseq.data import encoders
    from omegaconf import open_dict

    tokenizer = None
    if translator.cfg.get("tokenizer") is not None:
        config = copy.deepcopy(translator.cfg.tokenizer)
        language = translator.task.cfg.target_lang
        if "source_lang" in config and language:
            with open_dict(config):
                config.source_lang = language  # fairseq's Moses tokenizes in source_lang
        tokenizer = encoders.build_tokenizer(config)

    def encode(sentence: str) -> torch.Tensor:
        text = tokenizer.encode(sentence) if tokenizer is not None else sentence
        text = translator.apply_bpe(text)
        return translator.tgt_dict.encode_line(text, add_if_not_exist=False).long()

    return encode


def log_probabilities(translator, sources, targets, features: np.ndarray | None):
    """``(sum of log-probabilities (natural log), number of target tokens)`` of each target
    (tokens, end of sentence included) given its source (tokens) and feature row."""
    from fairseq.sequence_scorer import SequenceScorer

    scorer = SequenceScorer(translator.tgt_dict)
    scores: dict[int, tuple[float, int]] = {}
    for batch in batches(translator, sources, targets):
        if features is not None:
            batch["net_input"]["visual_features"] = torch.as_tensor(features[batch["id"]])
        if translator.device.type == "cuda":
            from fairseq import utils

            batch = utils.move_to_cuda(batch)
        hypotheses = scorer.generate(translator.models, batch)
        for index, hypos in zip(batch["id"].tolist(), hypotheses, strict=True):
            positional = hypos[0]["positional_scores"]
            scores[index] = (float(positional.sum()), int(positional.numel()))
    missing = sorted(set(range(len(sources))) - set(scores))
    if missing:
        raise RuntimeError(f"lines {[m + 1 for m in missing[:10]]} were not scored")
    return [scores[index] for index in range(len(sources))]


def batches(translator, sources, targets):
    """fairseq's batches of (source, target) pairs, in the translator's batch sizes."""
    from fairseq.data import LanguagePairDataset

    task = translator.task
    dataset = LanguagePairDataset(
        sources,
        torch.LongTensor([len(s) for s in sources]),
        task.source_dictionary,
        targets,
        torch.LongTensor([len(t) for t in targets]),
        task.target_dictionary,
        left_pad_source=task.cfg.left_pad_source,
        left_pad_target=task.cfg.left_pad_target,
    )
    return task.get_batch_iterator(
        dataset=dataset,
        max_tokens=translator.cfg.dataset.max_tokens,
        max_sentences=translator.cfg.dataset.batch_size,
        max_positions=translator.max_positions,
        ignore_invalid_inputs=False,
        disable_iterator_cache=True,
    ).next_epoch_itr(shuffle=False)
