#!/usr/bin/env python3
"""Extract ResNet-50 image features for Multi30K, one row per line of an image_splits file.

    python scripts/extract_features.py --images flickr30k-images \\
        --split-file multi30k-dataset/data/task1/image_splits/train.txt \\
        --out features/train.npy --weights resnet50-11ad3fa6.pth [--layer pool5|res4f]

Row ``i`` of the output is the image on line ``i`` of the split file (COCO lines such as
``COCO_val2014_000000391895.jpg#2`` name the file before ``#``). ``pool5`` gives ``(N, 2048)``
(global average pool of the last block), ``res4f`` gives ``(N, 196, 1024)`` (the output of
``layer3`` for a 224 x 224 input, its 14 x 14 locations flattened row-major). Images are resized
(shorter side 256), center-cropped to 224 and normalized with the ImageNet mean and std.

The run is resumable: rows go into a memory-mapped ``OUT.partial`` and ``OUT.progress`` records
how many are done together with a fingerprint of the split file, layer, weights and dtype. Run the
same command again after an interruption to continue; the finished file is renamed to ``OUT``.

Needs torch, numpy, Pillow and tqdm; uses torchvision's ResNet-50 when torchvision imports and an
equivalent built-in definition (same state_dict keys) otherwise. Fairseq is not needed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

RESIZE = 256
CROP = 224
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
LAYER_SHAPES = {"pool5": (2048,), "res4f": (196, 1024)}
RANDOM_SEED = 0
WEIGHT_URLS = {
    "IMAGENET1K_V2 (torchvision's default)": "https://download.pytorch.org/models/resnet50-11ad3fa6.pth",
    "IMAGENET1K_V1 (the original ResNet-50 training)": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
}
MISSING_SHOWN = 5


class ExtractionError(Exception):
    """A problem with the input files or options, reported without a traceback."""


# ---------------------------------------------------------------------------------------------
# ResNet-50 with torchvision's module names (state_dict keys), for when torchvision is missing


class Bottleneck(nn.Module):
    """torchvision's ResNet v1.5 bottleneck: 1x1, 3x3 (carries the stride), 1x1 expanding x4."""

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50(nn.Module):
    """ResNet-50 (layers 3, 4, 6, 3) whose state_dict matches ``torchvision.models.resnet50``."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, 3, stride=1)
        self.layer2 = self._make_layer(128, 4, stride=2)
        self.layer3 = self._make_layer(256, 6, stride=2)
        self.layer4 = self._make_layer(512, 3, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * Bottleneck.expansion, num_classes)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        width = planes * Bottleneck.expansion
        downsample = nn.Sequential(
            nn.Conv2d(self.inplanes, width, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm2d(width),
        )
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = width
        layers += [Bottleneck(width, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits ``(B, num_classes)``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def torchvision_models() -> ModuleType | None:
    """``torchvision.models`` if torchvision imports here, else ``None``."""
    try:
        import torchvision.models as models
    except Exception:  # an ImportError, or a torchvision built for another torch
        return None
    return models


def build_resnet50() -> nn.Module:
    """A ResNet-50 before loading weights: torchvision's if it imports, else the built-in one."""
    models = torchvision_models()
    return ResNet50() if models is None else models.resnet50(weights=None)


def randomize_(model: nn.Module, seed: int = RANDOM_SEED) -> None:
    """Seeded initialisation (torchvision's for conv and batch norm), same for either network."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(
                module.weight, mode="fan_out", nonlinearity="relu", generator=generator
            )
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
            module.reset_running_stats()
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.01, generator=generator)
            nn.init.zeros_(module.bias)


def no_weights_message(reason: str) -> str:
    """Why there are no weights, and which file to download by hand."""
    urls = "\n".join(f"  {url}   {name}" for name, url in WEIGHT_URLS.items())
    return (
        f"no ResNet-50 weights available offline: {reason}. Download a torchvision ResNet-50 "
        f"state_dict by hand on a machine with internet access, e.g.\n{urls}\n"
        "and pass it with --weights FILE (--random-weights: random weights, for tests only)"
    )


def load_model(weights: Path | None, random_weights: bool) -> nn.Module:
    """ResNet-50 with the requested weights, on the CPU, in eval mode."""
    if random_weights:
        model = build_resnet50()
        randomize_(model)
        return model.eval()
    if weights is None:
        models = torchvision_models()
        if models is None:
            raise ExtractionError(no_weights_message("torchvision is not installed"))
        try:
            return models.resnet50(weights=models.ResNet50_Weights.DEFAULT).eval()
        except (OSError, RuntimeError) as err:  # URLError is an OSError
            raise ExtractionError(no_weights_message(f"downloading them failed ({err})")) from err
    if not weights.is_file():
        raise ExtractionError(f"weights file {weights} does not exist")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and weights_only errors have no common base
        raise ExtractionError(f"cannot load weights file {weights}: {err}") from err
    if not isinstance(state, dict):
        raise ExtractionError(
            f"weights file {weights} holds a {type(state).__name__}, not a ResNet-50 state_dict"
        )
    model = build_resnet50()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ExtractionError(
            f"weights file {weights} is not a torchvision ResNet-50 state_dict: {err}"
        ) from err
    return model.eval()


def weights_digest(model: nn.Module) -> str:
    """sha256 of the state_dict (names, dtypes and values): identifies the weights used."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def forward_features(model: nn.Module, images: torch.Tensor, layer: str) -> torch.Tensor:
    """``pool5``: ``(B, 2048)``; ``res4f``: ``(B, H*W, 1024)`` from layer3, row-major."""
    x = model.maxpool(model.relu(model.bn1(model.conv1(images))))
    x = model.layer3(model.layer2(model.layer1(x)))
    if layer == "res4f":
        return x.flatten(2).transpose(1, 2)
    return torch.flatten(model.avgpool(model.layer4(x)), 1)


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


def resized_size(width: int, height: int, size: int = RESIZE) -> tuple[int, int]:
    """(width, height) with the shorter side scaled to ``size`` (torchvision's rounding)."""
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


def preprocess(image: Image.Image) -> torch.Tensor:
    """RGB, resize (shorter side 256, bilinear), center crop 224, ImageNet normalization."""
    image = image.convert("RGB")
    width, height = resized_size(*image.size)
    image = image.resize((width, height), Image.Resampling.BILINEAR)
    left = int(round((width - CROP) / 2.0))
    top = int(round((height - CROP) / 2.0))
    image = image.crop((left, top, left + CROP, top + CROP))
    pixels = (np.asarray(image, dtype=np.float32) / 255.0 - MEAN) / STD
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))


class ImageDataset(Dataset):
    """Preprocessed images; an unreadable image yields zeros and an error message (else "")."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        path = self.paths[index]
        try:
            with Image.open(path) as image:
                return preprocess(image), ""
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            return torch.zeros(3, CROP, CROP), f"cannot read image {path}: {err}"


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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
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
    try:
        device = torch.device(args.device)
    except RuntimeError as err:
        raise ExtractionError(f"bad --device {args.device!r}: {err}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ExtractionError(f"--device {args.device}: CUDA is not available here")
    if args.random_weights:
        print(
            "WARNING: --random-weights: features of a randomly initialised ResNet-50, for "
            "tests and debugging only",
            file=sys.stderr,
        )
    model = load_model(args.weights, args.random_weights)
    fingerprint = {
        "split_sha256": split_sha256,
        "layer": args.layer,
        "weights_sha256": weights_digest(model),
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
    partial, progress = side_files(args.out)
    model.to(device)
    row = start
    with torch.inference_mode(), tqdm(total=len(paths), initial=start, unit="img") as bar:
        for images, errors in loader:
            failed = [error for error in errors if error]
            if failed:
                more = f" (and {len(failed) - 1} more in this batch)" if len(failed) > 1 else ""
                raise ExtractionError(failed[0] + more)
            features = forward_features(model, images.to(device, non_blocking=True), args.layer)
            batch = features.float().cpu().numpy().astype(dtype)
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
    del array
    if row < len(paths):
        print(
            f"stopped after row {row} of {len(paths)} (--max-rows); run again to continue",
            file=sys.stderr,
        )
        return
    os.replace(partial, args.out)
    progress.unlink()
    print(f"wrote {args.out}: {shape} {args.dtype}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: errors exit with a message naming the file at fault."""
    try:
        extract(parse_args(argv))
    except ExtractionError as err:
        sys.exit(f"extract_features: error: {err}")


if __name__ == "__main__":
    main()
