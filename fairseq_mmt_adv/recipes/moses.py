"""Moses tokenization (sacremoses) of Multi30K's raw files, for ``scripts/prepare-multi30k.sh
--tokenization moses``: punctuation normalized, optionally lowercased, tokenized with XML
escaping (``&amp;``, ``&apos;``...), as the dataset's official ``tok/`` files were made.

    python -m fairseq_mmt_adv.recipes.moses [--lowercase] [--workers N] IN.gz OUT LANG [...]

tokenizes each ``IN.gz`` (gzip-compressed text) into ``OUT`` (via ``OUT.tmp``), the files in
parallel.
"""

import argparse
import gzip
import os
import sys
from collections.abc import Sequence
from multiprocessing import Pool
from pathlib import Path

from fairseq_mmt_adv.recipes.command_line import file_triples, report_errors

JOBS = "IN.gz OUT LANG"  # the files of one job
PROG = "python -m fairseq_mmt_adv.recipes.moses"


class MosesError(RuntimeError):
    """sacremoses is missing, or a file cannot be read; the message says what to do."""


def tokenizer(lang: str, lowercase: bool):
    """One line of raw text -> one tokenized line (a function of the line)."""
    try:
        from sacremoses import MosesPunctNormalizer, MosesTokenizer
    except ImportError as err:
        raise MosesError(
            f"Moses tokenization needs sacremoses in {sys.executable} (pip install sacremoses)"
        ) from err
    normalizer, moses = MosesPunctNormalizer(lang=lang), MosesTokenizer(lang=lang)

    def tokenize(line: str) -> str:
        line = normalizer.normalize(line.rstrip("\n"))
        line = line.lower() if lowercase else line
        return moses.tokenize(line, escape=True, return_str=True).strip()

    return tokenize


def tokenize_file(source: str | Path, target: str | Path, lang: str, lowercase: bool) -> None:
    """Tokenize the gzip-compressed ``source`` into ``target``, one line per line."""
    tokenize = tokenizer(lang, lowercase)
    partial = f"{target}.tmp"
    try:
        with (
            gzip.open(source, "rt", encoding="utf-8") as lines,
            open(partial, "w", encoding="utf-8") as out,
        ):
            for line in lines:
                out.write(tokenize(line) + "\n")
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise MosesError(f"cannot read {source} ({err}): re-fetch the dataset") from err
    os.replace(partial, target)


def tokenize_files(jobs: Sequence[tuple[str, str, str]], lowercase: bool, workers: int) -> None:
    """``tokenize_file`` for each (source, target, lang), ``workers`` files at a time."""
    tokenizer(jobs[0][2] if jobs else "en", lowercase)  # sacremoses missing: fail here, once
    with Pool(max(1, min(workers, len(jobs)))) as pool:
        pool.starmap(tokenize_file, [(*job, lowercase) for job in jobs])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--lowercase", action="store_true", help="lowercase before tokenizing")
    parser.add_argument("--workers", type=int, default=1, help="files tokenized at once")
    parser.add_argument("jobs", nargs="+", metavar=JOBS)
    parser.add_argument("--prog", default=PROG, help="the name errors start with")
    args = parser.parse_args(argv)
    jobs = file_triples(parser, args.jobs, JOBS)
    return report_errors(
        args.prog, MosesError, lambda: tokenize_files(jobs, args.lowercase, args.workers)
    )


if __name__ == "__main__":
    sys.exit(main())
