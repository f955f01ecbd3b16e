"""Feature files of a data directory: linked from an extraction's output, or random for a speed
check.

* :func:`link_features` (``scripts/prepare-multi30k.sh --features``): each split's file is
  checked by the task's own rules (``fairseq_mmt_adv.data.feature_files.checked_feature_file``: a
  readable ``.npy`` of float16 or float32, shape ``(N, D)`` or ``(N, K, D)``, one row per
  sentence, every value finite) and by the train split's row shape, then linked as
  ``OUT/{split}.npy``; a float64 file is converted to a float32 copy instead (and that copy
  checked). Nothing is linked unless every file passes. Checking imports numpy only.
* :func:`random_features` (``scripts/device-check.sh``): random float16 rows, one per sentence
  of each split of a ``splits.tsv``.

    python -m fairseq_mmt_adv.recipes.features link SOURCE TARGET ROWS [SOURCE TARGET ROWS ...]
    python -m fairseq_mmt_adv.recipes.features random SPLITS_TSV OUT_DIR [--dim 2048]
"""

import argparse
import csv
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fairseq_mmt_adv.data.feature_files import VisualFeatureError, checked_feature_file
from fairseq_mmt_adv.recipes.command_line import file_triples, report_errors

JOBS = "SOURCE TARGET ROWS"  # the files of one job
PROG = "python -m fairseq_mmt_adv.recipes.features"


def checked_shape(
    path: Path, rows: int, train_shape: list[int] | None, source: Path | None = None
) -> list[int]:
    """A feature file's row shape, after the checks the task makes when it loads the split.

    Raises ``VisualFeatureError`` naming the file (``source`` when ``path`` is its float32 copy)
    and the fix.
    """
    try:
        array = checked_feature_file(str(path), rows, expected_shape=train_shape)
    except VisualFeatureError as err:
        if source is None or source == path:
            raise
        raise VisualFeatureError(str(err).replace(str(path), f"{source} (as float32)")) from err
    return [int(n) for n in array.shape[1:]]


def _float32_copy(source: Path, partial: Path) -> Path:
    """A float64 ``source`` as float32 in ``partial`` (other files: ``source`` itself)."""
    try:
        array = np.load(source, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError):
        return source  # the checks name the file and the error
    if array.dtype != np.float64:
        return source
    with open(partial, "wb") as out:  # np.save on a path would append ".npy"
        np.save(out, array.astype(np.float32))
    return partial


def link_features(jobs: Sequence[tuple[str | Path, str | Path, int]]) -> None:
    """Check every (source, target, rows) job, the first being the train split, then link each
    ``source`` as ``target`` (a float64 source: its float32 copy)."""
    ready, partials, train_shape = [], [], None
    try:
        for source, target, rows in jobs:
            source, target = Path(os.path.abspath(source)), Path(target)
            partials.append(target.with_name(target.name + ".tmp.npy"))
            partials[-1].unlink(missing_ok=True)
            checked = _float32_copy(source, partials[-1])
            shape = checked_shape(checked, int(rows), train_shape, source)
            train_shape = train_shape or shape
            ready.append((checked, partials[-1], target))
        for checked, partial, target in ready:
            if checked != partial:
                os.symlink(checked, partial)
            os.replace(partial, target)
    finally:
        for partial in partials:
            partial.unlink(missing_ok=True)


def random_features(
    splits_tsv: str | Path, out_dir: str | Path, dim: int = 2048, seed: int = 0
) -> list[Path]:
    """``out_dir/{split}.npy``: standard normal float16 rows, as many as the split's sentences
    in ``splits_tsv`` (columns ``split`` and ``sentences``, as prepare-multi30k.sh writes)."""
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with open(splits_tsv, newline="") as table:
        for row in csv.DictReader(table, delimiter="\t"):
            rows = int(row["sentences"])
            features = rng.standard_normal((rows, dim), np.float32).astype(np.float16)
            written.append(out_dir / f"{row['split']}.npy")
            np.save(written[-1], features)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--prog", default=PROG, help="the name errors start with")
    commands = parser.add_subparsers(dest="command", required=True)
    link = commands.add_parser("link", help="check and link feature files (train first)")
    link.add_argument("jobs", nargs="+", metavar=JOBS)
    rand = commands.add_parser("random", help="random float16 features for every split")
    rand.add_argument("splits_tsv", type=Path)
    rand.add_argument("out_dir", type=Path)
    rand.add_argument("--dim", type=int, default=2048)
    args = parser.parse_args(argv)
    if args.command == "random":
        random_features(args.splits_tsv, args.out_dir, args.dim)
        return 0
    jobs = file_triples(link, args.jobs, JOBS)
    return report_errors(args.prog, VisualFeatureError, lambda: link_features(jobs))


if __name__ == "__main__":
    sys.exit(main())
