#!/usr/bin/env python3
"""Extract ResNet-50 image features for Multi30K, one row per line of an image_splits file.

    python scripts/extract_features.py --images flickr30k-images \\
        --split-file multi30k-dataset/data/task1/image_splits/train.txt \\
        --out features/train.npy --weights resnet50-11ad3fa6.pth [--layer pool5|res4f]

Row ``i`` of the output is the image on line ``i`` of the split file (COCO lines such as
``COCO_val2014_000000391895.jpg#2`` name the file before ``#``). The network, preprocessing and
layers (``pool5``: ``(N, 2048)``; ``res4f``: ``(N, 196, 1024)``) are those of
:mod:`fairseq_mmt_adv.translation.image_features`, which the translator uses on new images
too. When the
file is complete, ``OUT.extractor.json`` beside it says what made it (layer, weights and their
sha256, dtype); training records it in the checkpoint, so that translating new images uses the
same extractor.

The run is resumable: rows go into a memory-mapped ``OUT.partial`` and ``OUT.progress`` records
how many are done together with a fingerprint of the split file, layer, weights and dtype. Run the
same command again after an interruption to continue; the finished file is renamed to ``OUT``.

Needs torch, torchvision (its ResNet-50 and transforms), numpy, Pillow and tqdm (the features
extra of setup.py). Fairseq is not needed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from fairseq_mmt_adv.translation.image_features import (
    CROP,
    LAYER_SHAPES,
    WEIGHT_URLS,
    ExtractionError,
    describe,
    feature_network,
    forward_features,
    load_model,
    read_image,
    weights_name,
    write_description,
)

MISSING_SHOWN = 5


# ---------------------------------------------------------------------------------------------
# Images


def read_split(split_file: Path) -> tuple[list[str], str]:
    """Image file names in split order (``#id`` suffixes removed) and the file's sha256."""
    if not split_file.is_file():
        raise ExtractionError(f"split file {split_file} does not exist")
    data = split_file.read_bytes()
    lines = data.decode("utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ExtractionError(
            f"split file {split_file} is empty: it should list one image file name per line"
        )
    names = [line.split("#", 1)[0].strip() for line in lines]
    empty = [i + 1 for i, name in enumerate(names) if not name]
    if empty:
        raise ExtractionError(
            f"split file {split_file}: no image name on line(s) "
            f"{', '.join(map(str, empty[:MISSING_SHOWN]))}"
        )
    return names, hashlib.sha256(data).hexdigest()


def image_paths(images: Path, names: list[str], split_file: Path) -> list[Path]:
    """The image files, checked to exist."""
    if not images.is_dir():
        raise ExtractionError(f"image directory {images} does not exist")
    paths = [images / name for name in names]
    missing = [path for path in paths if not path.is_file()]
    if missing:
        shown = ", ".join(str(path) for path in missing[:MISSING_SHOWN])
        more = f" and {len(missing) - MISSING_SHOWN} more" if len(missing) > MISSING_SHOWN else ""
        raise ExtractionError(
            f"{len(missing)} of the {len(paths)} images listed in {split_file} "
            f"are missing: {shown}{more}"
        )
    return paths


class ImageDataset(Dataset):
    """Preprocessed images; an unreadable image yields zeros and an error message (else "")."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        try:
            return read_image(self.paths[index]), ""
        except ExtractionError as err:
            return torch.zeros(3, CROP, CROP), str(err)


# ---------------------------------------------------------------------------------------------
# Resumable output


def side_files(out: Path) -> tuple[Path, Path]:
    """``OUT.partial`` (the memory-mapped array being filled) and ``OUT.progress``."""
    return out.with_name(out.name + ".partial"), out.with_name(out.name + ".progress")


def write_progress(progress: Path, fingerprint: dict[str, str], rows: int) -> None:
    """Atomically record the fingerprint and the number of finished rows."""
    tmp = progress.with_name(progress.name + ".tmp")
    tmp.write_text(json.dumps({"fingerprint": fingerprint, "rows": rows}, indent=1) + "\n")
    os.replace(tmp, progress)


def read_progress(progress: Path) -> dict | None:
    """The progress record, or ``None`` when missing or unreadable."""
    try:
        state = json.loads(progress.read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(state, dict) and isinstance(state.get("fingerprint"), dict)
    return state if ok and isinstance(state.get("rows"), int) else None


def resume_partial(
    partial: Path, state: dict, shape: tuple[int, ...], dtype: np.dtype, fingerprint: dict[str, str]
) -> np.ndarray:
    """The partial array of an earlier run with the same fingerprint, checked."""
    old = state["fingerprint"]
    if old != fingerprint:
        diff = "; ".join(
            f"{key}: {old.get(key)} there, {new} now"
            for key, new in fingerprint.items()
            if old.get(key) != new
        )
        raise ExtractionError(
            f"{partial} was started with other inputs ({diff}); pass "
            "--restart to discard it and start over"
        )
    try:
        array = np.lib.format.open_memmap(partial, mode="r+")
    except (OSError, ValueError) as err:
        raise ExtractionError(f"cannot reopen {partial} ({err}); pass --restart") from err
    if array.shape != shape or array.dtype != dtype or not 0 <= state["rows"] <= shape[0]:
        raise ExtractionError(
            f"{partial} (shape {array.shape}, dtype {array.dtype}, {state['rows']} rows done) "
            "is inconsistent; pass --restart"
        )
    return array


def open_output(
    out: Path, shape: tuple[int, ...], dtype: np.dtype, fingerprint: dict[str, str], restart: bool
) -> tuple[np.ndarray, int]:
    """The memory-mapped partial array and the first row still to compute."""
    partial, progress = side_files(out)
    state = read_progress(progress) if partial.exists() else None
    if state is not None and not restart:
        array = resume_partial(partial, state, shape, dtype, fingerprint)
        if state["rows"]:
            print(f"resuming {partial} at row {state['rows']} of {shape[0]}", file=sys.stderr)
        return array, state["rows"]
    out.parent.mkdir(parents=True, exist_ok=True)
    array = np.lib.format.open_memmap(partial, mode="w+", dtype=dtype, shape=shape)
    write_progress(progress, fingerprint, 0)
    return array, 0


# ---------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Without --weights, torchvision's default ImageNet weights are downloaded (needs "
        "torchvision and internet access); offline, download a file by hand:\n"
        + "\n".join(f"  {url}  {name}" for name, url in WEIGHT_URLS.items()),
    )
    parser.add_argument("--images", type=Path, required=True, help="directory of the images")
    parser.add_argument(
        "--split-file",
        type=Path,
        required=True,
        help="image file names one per line (Multi30K image_splits/*.txt)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output .npy file")
    parser.add_argument(
        "--layer",
        choices=sorted(LAYER_SHAPES),
        default="pool5",
        help="pool5: (N, 2048); res4f: (N, 196, 1024) (default pool5)",
    )
    parser.add_argument(
        "--weights",
        type=Path,
        help="torchvision ResNet-50 state_dict file (e.g. resnet50-11ad3fa6.pth)",
    )
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="FOR TESTS AND DEBUGGING ONLY: seeded random weights, meaningless features",
    )
    add_run_options(parser)
    return parser


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """How the extraction runs: batches, device, workers, output dtype, resuming."""
    parser.add_argument("--batch-size", type=int, default=32, help="images per batch (32)")
    parser.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="cpu or cuda[:N] (default: cuda when available)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="DataLoader worker processes decoding images (default 0: in the "
        "main process; 4-8 keep a GPU busy)",
    )
    parser.add_argument(
        "--dtype",
        choices=["float16", "float32"],
        default="float16",
        help="output dtype (default float16)",
    )
    parser.add_argument(
        "--restart",
        action="store_true",
        help="discard an unfinished OUT.partial instead of resuming it",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    parser.add_argument(
        "--max-rows",
        type=int,
        help="debugging: stop after this many rows, leaving a resumable partial",
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.weights is not None and args.random_weights:
        parser.error("--weights and --random-weights exclude each other")
    for name in ("batch_size", "max_rows"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.workers < 0:
        parser.error("--workers must be at least 0")
    return args


def extract(args: argparse.Namespace) -> None:
    """Fill OUT.partial from its first unfinished row; rename it to OUT once complete."""
    if args.out.exists() and not args.overwrite:
        raise ExtractionError(f"{args.out} exists; pass --overwrite to replace it")
    names, split_sha256 = read_split(args.split_file)
    paths = image_paths(args.images, names, args.split_file)
    device = resolve_device(args.device)
    if args.random_weights:
        print(
            "WARNING: --random-weights: features of a randomly initialised ResNet-50, for "
            "tests and debugging only",
            file=sys.stderr,
        )
    model = load_model(args.weights, args.random_weights)
    description = describe(
        args.layer, model, weights_name(args.weights, args.random_weights), args.dtype
    )
    fingerprint = {
        "split_sha256": split_sha256,
        "layer": args.layer,
        "weights_sha256": description["weights_sha256"],
        "dtype": args.dtype,
    }
    dtype = np.dtype(args.dtype)
    shape = (len(paths), *LAYER_SHAPES[args.layer])
    array, start = open_output(args.out, shape, dtype, fingerprint, args.restart)
    stop = len(paths) if args.max_rows is None else min(len(paths), start + args.max_rows)
    loader = DataLoader(
        ImageDataset(paths[start:stop]),
        batch_size=args.batch_size,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
    )
    network = feature_network(model, args.layer).to(device)
    partial, progress = side_files(args.out)
    row = extract_rows(network, loader, array, paths, start, fingerprint, progress, args, device)
    del array
    if row < len(paths):
        print(
            f"stopped after row {row} of {len(paths)} (--max-rows); run again to continue",
            file=sys.stderr,
        )
        return
    write_description(args.out, description)  # before OUT: OUT never lacks its description
    os.replace(partial, args.out)
    progress.unlink()
    print(f"wrote {args.out}: {shape} {args.dtype}", file=sys.stderr)


def resolve_device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ExtractionError(f"bad --device {name!r}: {err}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ExtractionError(f"--device {name}: CUDA is not available here")
    return device


def extract_rows(network, loader, array, paths, start, fingerprint, progress, args, device) -> int:
    """Write the loader's batches (through :func:`feature_network`'s ``network``) into ``array``
    from row ``start``, recording the progress after each; the row reached."""
    row = start
    with torch.inference_mode(), tqdm(total=len(paths), initial=start, unit="img") as bar:
        for images, errors in loader:
            failed = [error for error in errors if error]
            if failed:
                more = f" (and {len(failed) - 1} more in this batch)" if len(failed) > 1 else ""
                raise ExtractionError(failed[0] + more)
            features = forward_features(network, images.to(device, non_blocking=True), args.layer)
            batch = features.float().cpu().numpy().astype(array.dtype)
            if not np.isfinite(batch).all():
                raise ExtractionError(
                    f"non-finite {args.dtype} features for the images of rows "
                    f"{row}-{row + len(batch) - 1} (from {paths[row]}); "
                    "try --dtype float32"
                )
            array[row : row + len(batch)] = batch
            array.flush()
            row += len(batch)
            write_progress(progress, fingerprint, row)
            bar.update(len(batch))
    return row


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: errors exit with a message naming the file at fault."""
    try:
        extract(parse_args(argv))
    except ExtractionError as err:
        sys.exit(f"extract_features: error: {err}")


if __name__ == "__main__":
    main()
