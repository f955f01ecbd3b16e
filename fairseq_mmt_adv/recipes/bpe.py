"""subword-nmt's BPE applied to text files, for ``scripts/prepare-multi30k.sh`` (step 3): every
split and language in one process, the files in parallel, instead of a ``subword-nmt apply-bpe``
process per file. Each line goes through the same ``BPE.process_line`` as in subword-nmt's
command, by fairseq's ``subword_nmt`` BPE, the translator's
(:func:`fairseq_mmt_adv.translation.text_pipeline.load_bpe`).

    python -m fairseq_mmt_adv.recipes.bpe [--workers N] CODES IN OUT [CODES IN OUT ...]

writes each ``OUT`` (via ``OUT.tmp``).
"""

import argparse
import os
import sys
from collections.abc import Sequence
from multiprocessing import Pool

from fairseq_mmt_adv.recipes.command_line import file_triples, report_errors
from fairseq_mmt_adv.translation.text_pipeline import load_bpe

JOBS = "CODES IN OUT"  # the files of one job
PROG = "python -m fairseq_mmt_adv.recipes.bpe"


class BPEError(RuntimeError):
    """subword-nmt is missing, or a file cannot be read; the message says what to do."""


def apply_bpe_file(codes: str, source: str, target: str) -> None:
    """``source`` segmented with ``codes`` into ``target``, line by line."""
    try:
        bpe = load_bpe(codes)
    except ImportError as err:
        raise BPEError(
            f"BPE needs subword-nmt in {sys.executable} (pip install subword-nmt)"
        ) from err
    except OSError as err:
        raise BPEError(f"cannot read the BPE codes {codes} ({err}): learn them again") from err
    partial = f"{target}.tmp"
    try:
        with (
            open(source, encoding="utf-8") as lines,
            open(partial, "w", encoding="utf-8") as out,
        ):
            for line in lines:
                out.write(bpe.encode(line))
    except (OSError, UnicodeDecodeError) as err:
        raise BPEError(f"cannot segment {source} ({err}): run its step again") from err
    os.replace(partial, target)


def apply_bpe_files(jobs: Sequence[tuple[str, str, str]], workers: int) -> None:
    """``apply_bpe_file`` for each (codes, source, target), ``workers`` files at a time."""
    with Pool(max(1, min(workers, len(jobs)))) as pool:
        pool.starmap(apply_bpe_file, jobs)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1, help="files segmented at once")
    parser.add_argument("jobs", nargs="+", metavar=JOBS)
    parser.add_argument("--prog", default=PROG, help="the name errors start with")
    args = parser.parse_args(argv)
    jobs = file_triples(parser, args.jobs, JOBS)
    return report_errors(args.prog, BPEError, lambda: apply_bpe_files(jobs, args.workers))


if __name__ == "__main__":
    sys.exit(main())
