"""A data directory's preprocessing record, ``preprocessing.json``, read as fairseq's tokenizer
and BPE options.

``scripts/prepare-multi30k.sh`` writes ``DATA/preprocessing.json``, which says how the binarized
text was made: lowercasing; Moses punctuation normalization and tokenization, as
:mod:`fairseq_mmt_adv.recipes.moses` does them; BPE codes. Copies of it travel beside the
checkpoints. :meth:`TextPipeline.fairseq_options` turns it into the options of fairseq's
tokenizer and BPE registries (``--tokenizer moses_lowercase`` of :mod:`.tokenizers`, ``--bpe
subword_nmt``), with which the translator applies the same steps to new captions and undoes
them on its output, as fairseq's hub interface and ``fairseq-interactive`` do. A directory
without the file (fairseq's own layout, the demo corpus) has no steps but those given as
``--tokenizer`` and ``--bpe`` (``tokenizer=``, ``bpe=`` in Python).

Two commands keep model directories complete (``MultimodalTranslator.from_pretrained(DIR)``
needs nothing else)::

    python -m fairseq_mmt_adv.translation.text_pipeline write DATA \\
        --source-lang en --target-lang de --lowercase --tokenizer moses --bpe-codes bpe/codes
    python -m fairseq_mmt_adv.translation.text_pipeline copy DATA SAVE_DIR

``write`` records the steps in ``DATA/preprocessing.json`` (``scripts/prepare-multi30k.sh`` runs
it); ``copy`` puts the dictionaries, ``preprocessing.json`` and the BPE codes of DATA beside the
checkpoints (``examples/multi30k/train.sh`` runs it).
"""

import argparse
import glob
import json
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

PREPROCESSING_FILE = "preprocessing.json"


@dataclass
class TextPipeline:
    """The steps of one data directory; ``bpe_codes`` is relative to it."""

    source_lang: str | None = None
    target_lang: str | None = None
    lowercase: bool = False
    tokenizer: str | None = None  # "moses" (punctuation normalized, tokenized, escaped) or None
    bpe_codes: str | None = None  # subword-nmt codes
    directory: str = "."

    def __post_init__(self) -> None:
        if self.tokenizer not in (None, "moses"):
            raise ValueError(f"unknown tokenizer {self.tokenizer!r} in {self.path}: moses or null")

    @property
    def path(self) -> str:
        return os.path.join(self.directory, PREPROCESSING_FILE)

    @classmethod
    def load(cls, directory: str | Path) -> "TextPipeline | None":
        """The pipeline of ``directory``'s ``preprocessing.json``; ``None`` without one."""
        path = Path(directory) / PREPROCESSING_FILE
        if not path.is_file():
            return None
        try:
            fields = json.loads(path.read_text(encoding="utf-8"))
            return cls(**fields, directory=str(directory))
        except (ValueError, TypeError) as error:
            raise ValueError(f"cannot read {path}: {error}; write it again") from error

    def save(self, directory: str | Path) -> Path:
        fields = {k: v for k, v in asdict(self).items() if k != "directory"}
        path = Path(directory) / PREPROCESSING_FILE
        text = json.dumps(fields, indent=2) + "\n"
        if not path.is_file() or path.read_text(encoding="utf-8") != text:  # else keep its time
            path.write_text(text, encoding="utf-8")
        return path

    def fairseq_options(self, tokenizer: bool = True, bpe: bool = True) -> dict:
        """The steps (the ``tokenizer`` and ``bpe`` ones) as options of fairseq's tokenizer and
        BPE registries, by the names of ``from_pretrained``'s overrides: Moses as
        :mod:`fairseq_mmt_adv.recipes.moses` does it (``moses_lowercase`` without dash splits),
        else whitespace only, lowercased or not; subword-nmt's BPE with the codes."""
        options = {key: getattr(self, key) for key in ("source_lang", "target_lang")}
        if tokenizer and self.tokenizer == "moses":
            options.update(tokenizer="moses_lowercase", moses_no_dash_splits=True)
            options.update(moses_keep_case=not self.lowercase)
        elif tokenizer:
            options["tokenizer"] = "lowercase" if self.lowercase else "space"
        if bpe and self.bpe_codes is not None:
            codes = os.path.join(self.directory, self.bpe_codes)
            if not os.path.isfile(codes):
                raise FileNotFoundError(f"{self.path} names BPE codes {codes}, which are missing")
            options.update(bpe="subword_nmt", bpe_codes=codes)
        return {key: value for key, value in options.items() if value is not None}

    def build(self) -> tuple:
        """fairseq's tokenizer and BPE (``encode``/``decode``) for the steps; BPE ``None``
        without codes."""
        from fairseq.data import encoders

        options = argparse.Namespace(**self.fairseq_options())
        return encoders.build_tokenizer(options), encoders.build_bpe(options)


def load_bpe(codes: str | Path):
    """fairseq's ``subword_nmt`` BPE of a codes file (subword-nmt's, all merges, no vocabulary
    filter, as its ``apply-bpe`` command): the data's BPE (``recipes.bpe``) and the
    translator's."""
    from fairseq.data import encoders

    return encoders.build_bpe(argparse.Namespace(bpe="subword_nmt", bpe_codes=str(codes)))


def dictionaries(directory: str | Path, pipeline: TextPipeline | None) -> list[Path]:
    """The fairseq dictionaries of ``directory``: those of the pipeline's languages, or every
    ``dict.*.txt`` when there is none or it names none."""
    directory = Path(directory)
    if pipeline is not None and pipeline.source_lang and pipeline.target_lang:
        names = [f"dict.{lang}.txt" for lang in (pipeline.source_lang, pipeline.target_lang)]
        return [directory / name for name in names if (directory / name).is_file()]
    return sorted(Path(p) for p in glob.glob(str(directory / "dict.*.txt")))


def copy_for_translation(data: str | Path, destination: str | Path) -> list[Path]:
    """Copy what translating needs from the data directory ``data`` to ``destination``:
    dictionaries, ``preprocessing.json`` and the BPE codes it names (at the same relative
    path). Returns the copies."""
    data, destination = Path(data), Path(destination)
    pipeline = TextPipeline.load(data)
    files = dictionaries(data, pipeline)
    if pipeline is not None:
        files.append(data / PREPROCESSING_FILE)
    if pipeline is not None and pipeline.bpe_codes is not None:
        codes = data / pipeline.bpe_codes
        if not codes.is_file() or Path(pipeline.bpe_codes).is_absolute() or ".." in codes.parts:
            raise FileNotFoundError(
                f"{pipeline.path} names BPE codes {pipeline.bpe_codes}, which are not a file "
                f"inside {data}: write it again with the codes' path relative to {data}"
            )
        files.append(codes)
    copies = []
    for source in files:
        target = destination / source.relative_to(data)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        copies.append(target)
    return copies


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m fairseq_mmt_adv.translation.text_pipeline",
        description="Record a data directory's preprocessing, or copy what translating needs.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    write = commands.add_parser("write", help="write DATA/preprocessing.json")
    write.add_argument("data", help="the fairseq-preprocess directory")
    write.add_argument("--source-lang", required=True)
    write.add_argument("--target-lang", required=True)
    write.add_argument("--lowercase", action="store_true", help="the text was lowercased")
    write.add_argument(
        "--tokenizer", choices=["moses"], help="Moses-normalized, tokenized and escaped"
    )
    write.add_argument("--bpe-codes", help="subword-nmt codes of the source, relative to DATA")
    copy = commands.add_parser("copy", help="copy dictionaries, preprocessing and BPE codes")
    copy.add_argument("data", help="the fairseq-preprocess directory")
    copy.add_argument("destination", help="the checkpoint directory")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    prog = "text_pipeline"
    if not os.path.isdir(args.data):
        sys.exit(f"{prog}: error: data directory {args.data} does not exist")
    if args.command == "write":
        pipeline = TextPipeline(
            args.source_lang,
            args.target_lang,
            args.lowercase,
            args.tokenizer,
            args.bpe_codes,
            directory=args.data,
        )
        if args.bpe_codes is not None and not os.path.isfile(
            os.path.join(args.data, args.bpe_codes)
        ):
            sys.exit(f"{prog}: error: --bpe-codes {args.bpe_codes}: no such file in {args.data}")
        print(f"{prog}: wrote {pipeline.save(args.data)}", file=sys.stderr)
        return 0
    try:
        copies = copy_for_translation(args.data, args.destination)
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"{prog}: error: {error}")
    if not copies:
        print(f"{prog}: warning: {args.data} has no dictionaries to copy", file=sys.stderr)
    for copied in copies:
        print(f"{prog}: copied {copied}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
