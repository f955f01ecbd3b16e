"""What the subcommands of ``fairseq-mmt-evaluate`` share: fairseq's generation parser with the
options of ``fairseq-mmt-translate``, the model loaded as that command loads it, images or
features for a list of lines, text read with its errors named, and the output (a short table on
stdout, ``--json FILE``)."""

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fairseq_mmt_adv.translation import cli as translate_cli
from fairseq_mmt_adv.translation.translator import MultimodalTranslator, TranslationInputError

logger = logging.getLogger("fairseq_mmt_adv.evaluate")

PROG = "fairseq-mmt-evaluate"


class EvaluationInputError(TranslationInputError):
    """Input that cannot be evaluated as given; the message names the file, the line and the fix."""


def parser(command: str, description: str):
    """fairseq's generation parser (``DATA --path CKPT``, ``--cpu``, ``--batch-size``,
    ``--max-tokens``, ``--beam``, ``--tokenizer``, ``--bpe``...) with the shared options."""
    from fairseq import options

    parser = options.get_generation_parser(default_task="multimodal_translation")
    parser.prog = f"{PROG} {command}"
    parser.description = description
    group = parser.add_argument_group(PROG)
    group.add_argument("--json", metavar="FILE", help="write the results as JSON to FILE")
    translate_cli.add_extractor_weights(group, "--images")
    return parser, group


def parse(parser, argv: Sequence[str] | None):
    from fairseq import options

    return options.parse_args_and_arch(parser, input_args=None if argv is None else list(argv))


def load(args) -> tuple[MultimodalTranslator, object]:
    """The translator of ``--path`` as ``fairseq-mmt-translate`` loads it, and the config;
    ``--visual-features DIR`` replaces the feature directory the checkpoint stores."""
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from omegaconf import open_dict

    translate_cli.check_tokenizer_languages(args)
    cfg = convert_namespace_to_omegaconf(args)
    translator = translate_cli.load_translator(args, cfg)
    translator.eval()
    if getattr(args, "visual_features", None):
        with open_dict(translator.task.cfg):
            translator.task.cfg.visual_features = args.visual_features
    return translator, cfg


def read_text(path: str | Path, flag: str) -> list[str]:
    """The lines of ``path`` (given as ``flag``); a missing file or an empty line is refused."""
    path = Path(path)
    if not path.is_file():
        raise EvaluationInputError(f"{flag} {path} does not exist")
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise EvaluationInputError(f"{flag} {path} is empty")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise EvaluationInputError(
                f"{path}, line {number}: the line is empty; give every line text (or remove "
                "the line from every file of the set)"
            )
    return [line.rstrip("\r") for line in lines]


def same_count(files: dict[str, list]) -> int:
    """The common number of lines of ``files`` (name: lines); differing counts are refused."""
    counts = {name: len(lines) for name, lines in files.items()}
    if len(set(counts.values())) != 1:
        listed = ", ".join(f"{name} has {count}" for name, count in counts.items())
        raise EvaluationInputError(
            f"the files must have one line per item, but {listed} lines: give files of the "
            "same set, line by line"
        )
    return next(iter(counts.values()))


class Images:
    """The images of the lines of a set: a features file (row i for line i), or image files
    (``directory``/line i of ``order``), read only for a model that uses them."""

    def __init__(self, features=None, directory=None, order=None, flags="--images/--image-order"):
        if features is not None and (directory is not None or order is not None):
            raise EvaluationInputError(f"give --features or {flags}, not both")
        if (directory is None) != (order is None):
            raise EvaluationInputError("give --images DIR together with --image-order FILE")
        self.features_path, self.directory, self.order = features, directory, order

    @property
    def given(self) -> bool:
        return self.features_path is not None or self.directory is not None

    def for_model(self, translator: MultimodalTranslator, count: int) -> np.ndarray | None:
        """Raw features of the ``count`` lines for ``translator``; None for a text-only model
        (which says once that it ignores images given)."""
        if not translator.uses_image:
            if self.given:
                logger.info("a text-only model (--visual-fusion none): the images play no part")
            return None
        if self.features_path is not None:
            features = translate_cli.read_features(self.features_path)
            return translator.checked_features(features, count, f"--features {self.features_path}")
        if self.directory is None:
            raise EvaluationInputError(
                "this model fuses the image: give --features FILE.npy (row i: the image of line "
                "i) or --images DIR --image-order FILE"
            )
        paths = image_paths(self.directory, self.order)
        if len(paths) != count:
            raise EvaluationInputError(
                f"{self.order} has {len(paths)} lines for {count} lines of text: give one "
                "image a line, in the same order"
            )
        return translator.visual_features(count, images=paths).numpy()


def image_paths(directory: str, order: str) -> list[str]:
    """The image of each line: ``directory``/(line i of ``order``); a missing file is named."""
    if not os.path.isdir(directory):
        raise EvaluationInputError(f"image directory {directory} does not exist")
    paths = []
    for number, name in enumerate(read_text(order, "--image-order"), start=1):
        path = os.path.join(directory, name.strip())
        if not os.path.isfile(path):
            raise EvaluationInputError(
                f"{order}, line {number}: no image {path}: put the image there or correct the line"
            )
        paths.append(path)
    return paths


def write_json(path: str | None, results: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        logger.info(f"wrote {path}")


def print_table(rows: list[tuple[str, str]]) -> None:
    """Two columns, measure and value, on stdout."""
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
