"""``fairseq-mmt-evaluate contrastive``: does the model rank the correct translation of an
ambiguous sentence above the incorrect one, given the image (CoMMuTE, Futeral et al. 2023)?

    fairseq-mmt-evaluate contrastive DATA --path CKPT --source F --correct F --incorrect F \\
        (--features F.npy | --images DIR --image-order F) [--score token|sum] [--scores DIR]
    fairseq-mmt-evaluate contrastive DATA --path CKPT --commute CoMMuTE/en-de --target-lang de

Each candidate gets the model's teacher-forced log-probability given the source and the image:
per target token (the default: CoMMuTE ranks by perplexity) or summed (``--score sum``). A
line is right when its correct candidate scores better than its incorrect one (a tie is wrong,
as in CoMMuTE's ``evaluate.py``). The accuracy is the share of right lines, with its 95 %
bootstrap interval; on a set of CoMMuTE pairs (one sentence, two images, the candidates
swapped) also the share of pairs with both lines right. A text-only model prefers the same
candidate for both lines of a pair: it scores exactly 50 %. ``--scores DIR`` writes
``DIR/correct.txt`` and ``DIR/incorrect.txt`` for CoMMuTE's ``evaluate.py``: per-token
perplexities (``--score sum``: negative log-likelihoods), lower is better.
"""

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fairseq_mmt_adv.evaluation import common
from fairseq_mmt_adv.evaluation.contrastive_set import ContrastiveSet
from fairseq_mmt_adv.evaluation.teacher_forcing import log_probabilities, target_encoder

logger = logging.getLogger("fairseq_mmt_adv.evaluate")

BOOTSTRAP_SAMPLES = 1000
BOOTSTRAP_SEED = 12345  # sacreBLEU's default, as the BLEU intervals of evaluation.significance


def parse_args(argv: Sequence[str] | None):
    parser, group = common.parser("contrastive", __doc__.split("\n\n")[0])
    group.add_argument("--source", metavar="FILE", help="source lines (raw text)")
    group.add_argument("--correct", metavar="FILE", help="the correct translation of each line")
    group.add_argument("--incorrect", metavar="FILE", help="the incorrect translation of each")
    group.add_argument("--features", metavar="FILE.npy", help="row i: the image of line i")
    group.add_argument("--images", metavar="DIR", help="the images, named by --image-order")
    group.add_argument("--image-order", metavar="FILE", help="line i: the image file of line i")
    group.add_argument(
        "--commute", metavar="DIR", help="a CoMMuTE directory (src.en, correct.LANG, ...)"
    )
    group.add_argument(
        "--score", choices=("token", "sum"), default="token",
        help="log-probability per target token (CoMMuTE's perplexity) or summed",
    )  # fmt: skip
    group.add_argument("--scores", metavar="DIR", help="write CoMMuTE's correct/incorrect.txt")
    return common.parse(parser, argv)


def read_set(args) -> ContrastiveSet:
    if args.commute:
        given = [f"--{k}" for k in ("source", "correct", "incorrect") if getattr(args, k)]
        if given or args.images or args.image_order:
            raise common.EvaluationInputError(
                f"--commute reads its own files: drop {' '.join(given) or '--images/--image-order'}"
            )
        return ContrastiveSet.from_commute(args.commute, args.target_lang, args.features)
    missing = [f"--{k}" for k in ("source", "correct", "incorrect") if not getattr(args, k)]
    if missing:
        raise common.EvaluationInputError(
            f"give {' '.join(missing)} (or --commute DIR --target-lang LANG)"
        )
    images = common.Images(args.features, args.images, args.image_order)
    return ContrastiveSet.from_files(args.source, args.correct, args.incorrect, images)


def line_scores(translator, data: ContrastiveSet, mode: str) -> np.ndarray:
    """``(lines, 2)`` scores of the correct and the incorrect candidate (higher is better).
    Equal (source, candidate, image) triples are scored once: for a text-only model the two
    lines of a pair get exactly the same two scores, swapped."""
    features = data.images.for_model(translator, len(data))
    name = data.names["source"]
    sources = translator.fitted(
        [translator.encode(s) for s in data.sources], where=lambda n: f"{name}, line {n}"
    )
    encode = target_encoder(translator)
    candidates = [[encode(c) for c in data.correct], [encode(c) for c in data.incorrect]]
    warn_unknowns(translator, candidates, data)
    index: dict[tuple, int] = {}  # (source, candidate, image) -> position in ``unique``
    unique, positions = [], np.zeros((len(data), 2), dtype=int)
    for line, source in enumerate(sources):
        for side in (0, 1):
            target = candidates[side][line]
            image = line if features is not None else None
            key = (tuple(source.tolist()), tuple(target.tolist()), image)
            if key not in index:
                index[key] = len(unique)
                unique.append((source, target, line))
            positions[line, side] = index[key]
    rows = None if features is None else features[[line for _, _, line in unique]]
    found = log_probabilities(translator, [u[0] for u in unique], [u[1] for u in unique], rows)
    values = np.array([total / count if mode == "token" else total for total, count in found])
    return values[positions]


def warn_unknowns(translator, candidates, data: ContrastiveSet) -> None:
    """Candidate words outside the model's dictionary become its unknown token: said once."""
    unk = translator.tgt_dict.unk()
    lines = sum(int((tokens == unk).any()) for side in candidates for tokens in side)
    if lines:
        logger.warning(
            f"{lines} candidates of {data.names['correct']} and {data.names['incorrect']} hold "
            "words outside the model's target dictionary (scored as its unknown token)"
        )


def interval(right: np.ndarray, samples: int = BOOTSTRAP_SAMPLES) -> list[float]:
    """The 95 % bootstrap interval of the accuracy (percent) of ``right`` (one bool a line)."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    draws = rng.integers(len(right), size=(samples, len(right)))
    means = right[draws].mean(axis=1) * 100
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def results(data: ContrastiveSet, scores: np.ndarray, mode: str) -> dict:
    """Accuracy, its interval, the pairs, and each line's scores, for the JSON."""
    right = scores[:, 0] > scores[:, 1]
    pairs = data.pairs
    both = None
    if pairs is not None:
        pair_right = [bool(right[a] and right[b]) for a, b in pairs]
        both = {"accuracy": 100 * float(np.mean(pair_right)), "items": len(pairs)}
    return {
        "accuracy": 100 * float(right.mean()),
        "items": len(data),
        "interval": interval(right),
        "pairs": both,
        "score": "log-probability per target token" if mode == "token" else "log-probability",
        "files": data.names,
        "lines": [
            {"correct": float(good), "incorrect": float(bad), "right": bool(ok)}
            for (good, bad), ok in zip(scores, right, strict=True)
        ],
    }


def write_commute_scores(directory: str, scores: np.ndarray, mode: str) -> None:
    """CoMMuTE's ``correct.txt`` and ``incorrect.txt``: lower is better (perplexity per token,
    or the negative log-likelihood for ``--score sum``)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    for side, name in enumerate(("correct.txt", "incorrect.txt")):
        values = [math.exp(-s) if mode == "token" else -s for s in scores[:, side].tolist()]
        (out / name).write_text("".join(f"{v!r}\n" for v in values), encoding="utf-8")
    logger.info(f"wrote {out / 'correct.txt'} and {out / 'incorrect.txt'}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    data = read_set(args)  # the set's errors first: they are cheap
    data.check_candidates()
    translator, _ = common.load(args)
    scores = line_scores(translator, data, args.score)
    found = results(data, scores, args.score)
    found["model"] = args.path
    found["uses_image"] = translator.uses_image
    if args.scores:
        write_commute_scores(args.scores, scores, args.score)
    common.write_json(args.json, found)
    low, high = found["interval"]
    accuracy = f"{found['accuracy']:.2f} % (95 % interval {low:.2f}-{high:.2f})"
    rows = [("lines", str(found["items"])), ("accuracy", accuracy)]
    if found["pairs"] is not None:
        pairs = found["pairs"]
        rows.append(("pairs both right", f"{pairs['accuracy']:.2f} % of {pairs['items']}"))
    common.print_table(rows)
    return 0
