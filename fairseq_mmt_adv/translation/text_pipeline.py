"""How raw text becomes the model's tokens and back: the preprocessing of a data directory.

``scripts/prepare-multi30k.sh`` writes ``DATA/preprocessing.json``, which says how the
binarized text was made: lowercasing; Moses punctuation normalization and tokenization, as
:mod:`fairseq_mmt_adv.recipes.moses` does them; BPE codes. Copies of it travel beside the
checkpoints. The translator applies the same steps to new captions, and undoes them on its
output. A directory without the file (the demo corpus, binarized from plain text) has no steps:
text goes in and comes out as it is.

Two commands keep model directories complete (``MultimodalTranslator.from_pretrained(DIR)``
needs nothing else)::

    python -m fairseq_mmt_adv.translation.text_pipeline write DATA \\
        --source-lang en --target-lang de --lowercase --tokenizer moses --bpe-codes bpe/codes
    python -m fairseq_mmt_adv.translation.text_pipeline copy DATA SAVE_DIR

``write`` records the steps in ``DATA/preprocessing.json`` (``scripts/prepare-multi30k.sh`` runs
it); ``copy`` puts the dictionaries, ``preprocessing.json`` and the BPE codes of DATA beside the
checkpoints (``examples/multi30k/train.sh`` runs it).

Imports neither fairseq nor torch.
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
BPE_SEPARATOR = "@@"


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
        self._source = self._target = self._bpe = None

    @property
    def path(self) -> str:
        return os.path.join(self.directory, PREPROCESSING_FILE)

    @classmethod
    def load(cls, directory: str | Path) -> "TextPipeline":
        """The pipeline of ``directory``: its ``preprocessing.json``, or no steps at all."""
        path = Path(directory) / PREPROCESSING_FILE
        if not path.is_file():
            return cls(directory=str(directory))
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

    def tokenize(self, text: str) -> str:
        """Raw source text as the binarized source was made, before BPE."""
        text = " ".join(text.split())
        if self.tokenizer is None:
            return text.lower() if self.lowercase else text
        if self._source is None:
            from fairseq_mmt_adv.recipes.moses import tokenizer

            self._source = tokenizer(self.source_lang, self.lowercase)  # prepare-multi30k's
        return self._source(text)

    def apply_bpe(self, text: str) -> str:
        if self.bpe_codes is None:
            return text
        if self._bpe is None:
            codes = os.path.join(self.directory, self.bpe_codes)
            if not os.path.isfile(codes):
                raise FileNotFoundError(f"{self.path} names BPE codes {codes}, which are missing")
            self._bpe = load_bpe(codes)
        return self._bpe.process_line(text)

    def remove_bpe(self, text: str) -> str:
        if self.bpe_codes is None:
            return text
        return (text + " ").replace(BPE_SEPARATOR + " ", "").rstrip()

    def detokenize(self, text: str) -> str:
        """Target tokens back to plain text."""
        if self.tokenizer != "moses":
            return text
        if self._target is None:
            try:
                from sacremoses import MosesDetokenizer
            except ImportError as error:
                raise ImportError(f"{self.path} asks for Moses: pip install sacremoses") from error
            self._target = MosesDetokenizer(self.target_lang)
        return self._target.detokenize(text.split())


def load_bpe(codes: str | Path):
    """subword-nmt's ``BPE`` for a codes file, as its ``apply-bpe`` command builds it (all merges,
    no vocabulary filter): the data's BPE (``recipes.bpe``) and the translator's."""
    from subword_nmt.apply_bpe import BPE

    with open(codes, encoding="utf-8") as handle:
        return BPE(handle, separator=BPE_SEPARATOR)


def dictionaries(directory: str | Path, pipeline: TextPipeline) -> list[Path]:
    """The fairseq dictionaries of ``directory``: those of the pipeline's languages, or every
    ``dict.*.txt`` when it names none."""
    directory = Path(directory)
    if pipeline.source_lang and pipeline.target_lang:
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
    if (data / PREPROCESSING_FILE).is_file():
        files.append(data / PREPROCESSING_FILE)
    if pipeline.bpe_codes is not None:
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
