"""How many updates a run needs to get the scene-dependent words right.

Each interval checkpoint of a run (``checkpoint_{E}_{U}.pt``, written by fairseq-train
``--save-interval-updates N --keep-interval-updates -1``) translates a split of the demo corpus
greedily with its own images; the accuracy on the split's scene-ambiguous words
(``raw/{split}.ambig``, which only the image disambiguates) at each update count is the run's
learning curve, and the first update count at which it reaches ``--threshold`` % is the answer.

    python -m fairseq_mmt_adv.recipes.learning_curve RUN_DIR --data BIN --raw RAW \\
        [--split valid] [--threshold 95] [--json OUT]
"""

import argparse
import json
import re
import sys
from pathlib import Path

from fairseq_mmt_adv.evaluation.scoring import read_lines
from fairseq_mmt_adv.recipes.demo_corpus import ambiguous_word_accuracy

INTERVAL_CHECKPOINT = re.compile(r"checkpoint_?\d+_(\d+)\.pt")
# the accuracy on the ambiguous words (%) from which a run counts as getting them right
LEARNED = 95.0


def interval_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """``(updates, path)`` of the run's interval checkpoints, fewest updates first."""
    found = []
    for path in run_dir.glob("checkpoint*_*.pt"):
        match = INTERVAL_CHECKPOINT.fullmatch(path.name)
        if match:
            found.append((int(match[1]), path))
    if not found:
        raise FileNotFoundError(
            f"{run_dir} has no interval checkpoints (checkpoint_E_U.pt): train with "
            "--save-interval-updates N --keep-interval-updates -1"
        )
    return sorted(found)


def ambiguous_accuracy(checkpoint: Path, data: Path, raw: Path, split: str) -> float:
    """% of ``split``'s sentences whose greedy translation holds the right ambiguous word."""
    from fairseq_mmt_adv.evaluation import split_decoding
    from fairseq_mmt_adv.translation.translator import MultimodalTranslator

    translator = MultimodalTranslator.from_pretrained(
        checkpoint.parent, checkpoint.name, str(data.resolve()), cpu=True
    )
    translator.eval()
    loaded = split_decoding.load_split(translator, split, None)
    hypotheses = split_decoding.decode(translator, loaded.sources, loaded.congruent(), 1, None)
    return 100 * ambiguous_word_accuracy(hypotheses, read_lines(raw / f"{split}.ambig"))


def first_reaching(curve: list[tuple[int, float]], threshold: float) -> int | None:
    """The fewest updates at which the accuracy reaches ``threshold`` (None: never)."""
    return next((updates for updates, accuracy in curve if accuracy >= threshold), None)


def learning_curve(run_dir: Path, data: Path, raw: Path, split: str = "valid") -> dict:
    curve = [
        (updates, ambiguous_accuracy(path, data, raw, split))
        for updates, path in interval_checkpoints(run_dir)
    ]
    return {"split": split, "curve": curve, "updates_to_learn": first_reaching(curve, LEARNED)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a fairseq-train --save-dir")
    parser.add_argument("--data", type=Path, required=True, help="the binarized corpus")
    parser.add_argument("--raw", type=Path, required=True, help="the corpus's raw/ directory")
    parser.add_argument("--split", default="valid")
    parser.add_argument("--threshold", type=float, default=LEARNED, help="accuracy to reach, %%")
    parser.add_argument("--json", type=Path, help="write the curve here")
    args = parser.parse_args(argv)
    result = learning_curve(args.run_dir, args.data, args.raw, args.split)
    result["updates_to_learn"] = first_reaching(result["curve"], args.threshold)
    result["threshold"] = args.threshold
    for updates, accuracy in result["curve"]:
        print(f"{updates:6d} updates: {accuracy:5.1f} % of the ambiguous words right")
    print(f"{args.threshold:g} % reached after {result['updates_to_learn']} updates")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
