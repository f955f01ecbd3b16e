"""The demo's last step: a trained demo model translates three test captions with their images
through the Python interface (:class:`fairseq_mmt_adv.MultimodalTranslator`), as a user
translates new captions.

The demo corpus has synthetic feature vectors, not images: each caption's "image" is its row of
the test split's features, given with ``features=`` (as features extracted beforehand are). The
three captions are chosen to show the image at work: the same ambiguous English noun in two
scenes (whose German nouns differ), and a third noun.

    python -m fairseq_mmt_adv.recipes.demo_translation demo-run [--system ctx-mul]
"""

import argparse
import contextlib
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

EXAMPLES = 3


def pick_examples(ambig_lines: Sequence[str], count: int = EXAMPLES) -> list[int]:
    """Line numbers (0-based) of ``count`` test sentences: one ambiguous noun in two scenes whose
    German nouns differ, then other nouns (``.ambig`` lines: english<TAB>german<TAB>scene)."""
    senses = [line.split("\t") for line in ambig_lines]
    first: dict[tuple[str, str], int] = {}
    for number, (english, german, _) in enumerate(senses):
        first.setdefault((english, german), number)
    chosen: list[int] = []
    for (english, german), number in first.items():
        other = [n for (e, g), n in first.items() if e == english and g != german]
        if other:
            chosen = [number, other[0]]
            break
    for number, (english, _, _) in enumerate(senses):
        if len(chosen) >= count:
            break
        if all(senses[n][0] != english for n in chosen):
            chosen.append(number)
    return chosen[:count]


@contextlib.contextmanager
def quiet(*names: str):
    """The loggers ``names`` at WARNING, and no UserWarning, while the block runs."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's pin_memory note on a CPU
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def translate_examples(
    model_dir: str | Path, corpus: str | Path, checkpoint: str = "checkpoint_best.pt"
) -> list[dict]:
    """Three test captions of the demo corpus at ``corpus`` (raw/, bin/, features/) translated
    by the model in ``model_dir`` with their features; each with its scene and reference."""
    import numpy as np

    from fairseq_mmt_adv.translation.translator import MultimodalTranslator

    corpus = Path(corpus)
    raw = corpus / "raw"
    rows = pick_examples((raw / "test.ambig").read_text(encoding="utf-8").splitlines())
    captions = [(raw / "test.en").read_text(encoding="utf-8").splitlines()[i] for i in rows]
    references = [(raw / "test.de").read_text(encoding="utf-8").splitlines()[i] for i in rows]
    scenes = [(raw / "test.ambig").read_text(encoding="utf-8").splitlines()[i] for i in rows]
    features = np.load(corpus / "features" / "test.npy")[rows]
    with quiet("fairseq", "fairseq_mmt_adv"):  # the demo's last lines are the translations
        translator = MultimodalTranslator.from_pretrained(
            model_dir, checkpoint, str(corpus / "bin"), cpu=True
        )
        translations = translator.translate(captions, features=features, beam=5)
    return [
        {"caption": c, "scene": s.split("\t")[2], "translation": t, "reference": r}
        for c, s, t, r in zip(captions, scenes, translations, references, strict=True)
    ]


def format_examples(system: str, examples: list[dict]) -> str:
    lines = [
        f"{len(examples)} test captions translated by {system} through the Python interface "
        "(MultimodalTranslator; each caption's image given as its feature row, features=):"
    ]
    for example in examples:
        lines.append(f"  {example['caption']}   [image: {example['scene']}]")
        lines.append(f"    -> {example['translation']}   (reference: {example['reference']})")
    return "\n".join(lines)


def report(out: Path, systems: Sequence[str]) -> str:
    """The translations of the demo run in ``out`` by ctx-mul (else the first system)."""
    system = "ctx-mul" if "ctx-mul" in systems else systems[0]
    return format_examples(system, translate_examples(out / system, out / "corpus"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fairseq_mmt_adv.recipes.demo_translation",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("out", type=Path, help="the demo's directory (scripts/run_demo.py --out)")
    parser.add_argument("--system", default="ctx-mul", help="the trained system (ctx-mul)")
    args = parser.parse_args(argv)
    model = args.out / args.system
    if not (model / "checkpoint_best.pt").is_file():
        sys.exit(f"demo_translation: error: no {model / 'checkpoint_best.pt'}: run the demo first")
    print(report(args.out, [args.system]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
