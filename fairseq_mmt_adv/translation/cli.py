"""``fairseq-mmt-translate``: translate captions with their images, shaped like
``fairseq-interactive``::

    fairseq-mmt-translate DATA --path CKPT [--input FILE] [--features FILE.npy] [--beam 5 ...]

Each input line is ``caption<TAB>image path``, or just the caption together with
``--features FILE.npy`` (row i for line i); a text-only model needs neither. One translation per
input line goes to stdout, in input order, and nothing else: logs go to stderr. With
``--print-scores`` stdout has fairseq's ``H-`` (tokens), ``D-`` (detokenized) and ``P-``
(per-token log2 probabilities) lines instead. fairseq's generation options apply (``--beam``,
``--nbest``, ``--lenpen``, ``--diverse-beam-groups``...); ``--user-dir`` is not needed. DATA is
the directory with the dictionaries of the model. The tokenizer and BPE are those that
``DATA/preprocessing.json`` records, or fairseq's ``--tokenizer`` and ``--bpe`` with their
options, as in ``fairseq-interactive`` (``--tokenizer moses --source-lang en --target-lang de
--bpe subword_nmt --bpe-codes FILE``; ``--tokenizer moses_lowercase --moses-no-dash-splits`` for
text prepared as ``scripts/prepare-multi30k.sh`` does).
"""

import ast
import logging
import math
import os
import sys
from collections.abc import Sequence

import numpy as np

from fairseq_mmt_adv.translation.translator import (
    MultimodalTranslator,
    TranslationInputError,
    checkpoint_directory,
)

logger = logging.getLogger("fairseq_mmt_adv.translate")


def parse_args(argv: Sequence[str] | None):
    from fairseq import options

    parser = options.get_interactive_generation_parser(default_task="multimodal_translation")
    group = parser.add_argument_group("fairseq-mmt-translate")
    group.add_argument("--features", metavar="FILE.npy", help="row i: the image of input line i")
    group.add_argument("--print-scores", action="store_true", help="print H-/D-/P- lines")
    add_extractor_weights(group, "the images")
    return options.parse_args_and_arch(parser, input_args=None if argv is None else list(argv))


def read_inputs(path: str) -> tuple[list[str], list[str] | None]:
    """Captions and, when the lines carry them, image paths; errors name the line."""
    name = "standard input" if path == "-" else path
    if path == "-":
        lines = sys.stdin.read().splitlines()
    elif not os.path.exists(path):
        raise TranslationInputError(f"--input {path} does not exist")
    else:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    captions, images = [], []
    for number, line in enumerate(lines, start=1):
        caption, tab, image = line.partition("\t")
        if not caption.strip():
            raise TranslationInputError(f"{name}, line {number}: the caption is empty")
        if tab and not os.path.isfile(image.strip()):
            raise TranslationInputError(f"{name}, line {number}: no image at {image.strip()}")
        captions.append(caption)
        images.append(image.strip() if tab else None)
    if not captions:
        raise TranslationInputError(f"{name} has no line to translate")
    with_image = [image is not None for image in images]
    if any(with_image) and not all(with_image):
        number = with_image.index(False) + 1
        raise TranslationInputError(
            f"{name}, line {number}: no '<TAB>image path' where other lines have one"
        )
    return captions, images if all(with_image) else None


def read_features(path: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise TranslationInputError(f"--features {path} does not exist")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as error:
        raise TranslationInputError(f"--features {path} is not a .npy array: {error}") from error


def check_tokenizer_languages(args) -> None:
    """A tokenizer with languages (``moses``...) needs them, as in fairseq-interactive."""
    from fairseq.registry import REGISTRIES

    if args.tokenizer is None:
        return
    config = REGISTRIES["tokenizer"]["dataclass_registry"].get(args.tokenizer)
    fields = getattr(config, "__dataclass_fields__", {})
    missing = [k for k in ("source_lang", "target_lang") if k in fields and not getattr(args, k)]
    if missing:
        flags = " and ".join("--" + key.replace("_", "-") for key in missing)
        raise TranslationInputError(
            f"--tokenizer {args.tokenizer} needs {flags}: give the model's languages (e.g. "
            "--source-lang en --target-lang de)"
        )


def text_overrides(cfg) -> dict:
    """``--tokenizer`` and ``--bpe`` with the options given, as ``from_pretrained``'s
    overrides (``--bpe-codes`` may be left to ``MODEL_DIR/bpecodes``, as in fairseq's hub)."""
    from omegaconf import OmegaConf

    overrides = {}
    for key in ("tokenizer", "bpe"):
        chosen = cfg.get(key)
        if chosen is not None:
            given = [k for k in chosen if k != "_name" and not OmegaConf.is_missing(chosen, k)]
            overrides.update({k: chosen[k] for k in given if chosen[k] is not None})
            overrides[key] = chosen._name
    return overrides


def load_translator(args, cfg) -> MultimodalTranslator:
    """The translator of ``--path``, with the command's text, generation and batching options."""
    import torch
    from omegaconf import open_dict

    directory, files = checkpoint_directory(cfg.common_eval.path)
    overrides = ast.literal_eval(cfg.common_eval.model_overrides) | text_overrides(cfg)
    translator = MultimodalTranslator.from_pretrained(
        directory, files, os.path.abspath(cfg.task.data), args.extractor_weights, **overrides
    )
    with open_dict(translator.cfg):
        translator.cfg.generation = cfg.generation
        translator.cfg.dataset.batch_size = cfg.dataset.batch_size
        translator.cfg.dataset.max_tokens = cfg.dataset.max_tokens
        if not cfg.dataset.batch_size and not cfg.dataset.max_tokens:
            translator.cfg.dataset.max_tokens = 12000
    if not cfg.common.cpu and torch.cuda.is_available():
        translator.cuda()
        if cfg.common.fp16:
            translator.half()
    return translator


def print_hypotheses(translator, hypotheses, cfg, scores: bool) -> None:
    """The best translation of each caption; with ``scores``, fairseq's H-/D-/P- lines of the
    ``--nbest`` best (scores in base 2, as fairseq prints them)."""
    for sentence, hypos in enumerate(hypotheses):
        if not scores:
            print(translator.decode(hypos[0]["tokens"]))
            continue
        for hypo in hypos[: cfg.generation.nbest]:
            score = hypo["score"] / math.log(2)
            text = translator.tgt_dict.string(hypo["tokens"], cfg.common_eval.post_process)
            print(f"H-{sentence}\t{score}\t{text}")
            print(f"D-{sentence}\t{score}\t{translator.decode(hypo['tokens'])}")
            positional = " ".join(f"{p / math.log(2):.4f}" for p in hypo["positional_scores"])
            print(f"P-{sentence}\t{positional}")


def main(argv: Sequence[str] | None = None) -> int:
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    args = parse_args(argv)
    check_tokenizer_languages(args)
    captions, images = read_inputs(args.input)  # the input's errors first: they are cheap
    features = None
    if args.features is not None:
        if images is not None:
            raise TranslationInputError("give image paths in the input or --features, not both")
        features = read_features(args.features)
    cfg = convert_namespace_to_omegaconf(args)
    translator = load_translator(args, cfg)
    if not translator.uses_image and (features is not None or images is not None):
        logger.info("a text-only model (--visual-fusion none): the images play no part")
    elif features is not None:
        features = translator.checked_features(features, len(captions), args.features)
    elif translator.uses_image and images is None:
        raise TranslationInputError(
            "this model fuses the image: give each input line as 'caption<TAB>image path', or "
            "--features FILE.npy (row i: the image of line i)"
        )
    name = "standard input" if args.input == "-" else args.input
    tokens = translator.fitted(
        [translator.encode(caption) for caption in captions],
        truncate=cfg.task.truncate_source,
        where=lambda number: f"{name}, line {number}",
    )
    hypotheses = translator.generate(
        tokens, beam=cfg.generation.beam, images=images, features=features
    )
    print_hypotheses(translator, hypotheses, cfg, args.print_scores)
    given = "images" if images else "text only" if features is None else args.features
    logger.info(
        f"translated {len(captions)} captions with {cfg.common_eval.path} (beam "
        f"{cfg.generation.beam}, {given})"
    )
    return 0


def run_console_script(prog: str, main) -> None:
    """A console script's entry: logs on stderr, ``main()``'s status, and for bad input one
    line ``PROG: error: MESSAGE`` (the message names the input) instead of a traceback."""
    logging.basicConfig(
        format="%(asctime)s | %(levelname)s | %(name)s | %(message)s",
        level=os.environ.get("LOGLEVEL", "INFO").upper(),
        stream=sys.stderr,
        force=True,  # fairseq's imports may have configured logging already
    )
    try:
        sys.exit(main())
    except (TranslationInputError, FileNotFoundError) as error:
        sys.exit(f"{prog}: error: {error}")


def add_extractor_weights(group, what: str) -> None:
    """``--weights FILE``: the ResNet-50 state_dict that makes features of ``what``."""
    group.add_argument(
        "--weights",
        "--extractor-weights",
        dest="extractor_weights",
        metavar="FILE",
        help=f"ResNet-50 state_dict for {what} (default: torchvision's)",
    )


def cli_main() -> None:
    run_console_script("fairseq-mmt-translate", main)


if __name__ == "__main__":
    cli_main()
