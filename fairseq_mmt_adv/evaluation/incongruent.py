"""``fairseq-mmt-evaluate incongruent``: how much worse does the model translate a split when
each sentence gets another sentence's image (Elliott, EMNLP 2018)?

    fairseq-mmt-evaluate incongruent DATA --path CKPT --gen-subset test --permutations 3 --cpu \\
        [--visual-features DIR] [--beam 5] [--remove-bpe] [--json OUT]

The split is decoded with its own images, then with each of K fixed permutations of them
(the first is ``--shuffle-visual-features``'s, the next ones take the following seeds), and every
output is scored with the project's scorer (:mod:`fairseq_mmt_adv.evaluation.scoring`): BLEU is
its tokenized lowercased BLEU, chrF beside it. Reported: the congruent BLEU, the incongruent
mean and standard deviation over the permutations, their difference (``delta``, congruent minus
incongruent) and the paired-bootstrap p-value of the congruent output against each incongruent
one (:mod:`fairseq_mmt_adv.evaluation.significance`); ``p_value`` is the largest of them. A model
that ignores the image has a delta of 0 and a p-value of 1.
"""

import logging
from collections.abc import Sequence

import numpy as np

from fairseq_mmt_adv.evaluation import common, split_decoding
from fairseq_mmt_adv.evaluation.scoring import score
from fairseq_mmt_adv.evaluation.significance import paired_bootstrap

logger = logging.getLogger("fairseq_mmt_adv.evaluate")


def parse_args(argv: Sequence[str] | None):
    parser, group = common.parser("incongruent", __doc__.split("\n\n")[0])
    group.add_argument(
        "--permutations", type=int, default=3, metavar="K",
        help="number of fixed permutations of the images (default: 3)",
    )  # fmt: skip
    args = common.parse(parser, argv)
    if args.permutations < 1:
        raise common.EvaluationInputError(f"--permutations {args.permutations}: give at least 1")
    return args


def measure(translator, split: split_decoding.Split, permutations: int, cfg) -> dict:
    """Scores of the congruent and of each incongruent decoding, and their differences."""
    beam, post = cfg.generation.beam, cfg.common_eval.post_process
    lang = translator.task.cfg.target_lang
    refs = split.references
    congruent = split_decoding.decode(translator, split.sources, split.congruent(), beam, post)
    congruent_scores = score(congruent, refs, lang)
    bleus, chrfs, p_values = [], [], []
    for permutation in range(permutations):
        features = split.incongruent(permutation)
        hyps = split_decoding.decode(translator, split.sources, features, beam, post)
        scores = score(hyps, refs, lang)
        bleus.append(scores.bleu_tok_lc)
        chrfs.append(scores.chrf)
        p_values.append(paired_bootstrap(hyps, congruent, refs).p_value)
        logger.info(f"permutation {permutation}: BLEU {scores.bleu_tok_lc:.2f}")
    std = float(np.std(bleus, ddof=1)) if len(bleus) > 1 else 0.0
    return {
        "split": split.name,
        "items": len(split),
        "permutations": permutations,
        "metric": f"BLEU (tok, lc): {congruent_scores.bleu_tok_lc_signature}",
        "congruent": congruent_scores.bleu_tok_lc,
        "incongruent": float(np.mean(bleus)),
        "incongruent_std": std,
        "incongruent_scores": bleus,
        "delta": congruent_scores.bleu_tok_lc - float(np.mean(bleus)),
        "p_value": max(p_values),
        "p_values": p_values,
        "chrf": {"congruent": congruent_scores.chrf, "incongruent": chrfs},
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    translator, cfg = common.load(args)
    if not translator.uses_image:
        logger.info("a text-only model (--visual-fusion none): the images play no part")
    split = split_decoding.load_split(translator, args.gen_subset, cfg.common_eval.post_process)
    found = measure(translator, split, args.permutations, cfg)
    found["model"] = args.path
    found["uses_image"] = translator.uses_image
    common.write_json(args.json, found)
    k = found["permutations"]
    common.print_table([
        ("sentences", f"{found['items']} ({found['split']})"),
        ("BLEU, own images", f"{found['congruent']:.2f}"),
        (f"BLEU, other images ({k})",
         f"{found['incongruent']:.2f} +- {found['incongruent_std']:.2f}"),
        ("difference", f"{found['delta']:+.2f} (p = {found['p_value']:.4f})"),
    ])  # fmt: skip
    return 0
