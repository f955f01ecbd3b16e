"""ResNet-50 image features: the one network, preprocessing and layer definition that
``scripts/extract_features.py``, ``fairseq-mmt-translate`` and ``MultimodalTranslator`` share.

* ``pool5`` gives ``(N, 2048)`` (global average pool of the last block), ``res4f`` gives
  ``(N, 196, 1024)`` (the output of ``layer3`` for a 224 x 224 input, its 14 x 14 locations
  flattened row-major). Images are resized (shorter side 256, bilinear), center-cropped to 224
  and normalized with the ImageNet mean and std.
* A feature file ``DIR/NAME.npy`` made here has a *description* beside it,
  ``DIR/NAME.extractor.json``: the extractor, its preprocessing, the layer, the weights (name and
  sha256 of their state_dict) and the dtype. The task records the train split's description in
  the checkpoint; :func:`extractor_for` rebuilds that extractor for new images, and refuses when
  the weights at hand are not those.
* Weights: a state_dict file (``--weights FILE``), torchvision's default ImageNet weights when
  torchvision and the internet are there, or seeded random weights (tests only).

Needs torch and numpy; Pillow when images are read; never fairseq.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import nn

EXTRACTOR = "resnet50"
RESIZE = 256
CROP = 224
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
PREPROCESSING = f"resize {RESIZE} (shorter side, bilinear), center crop {CROP}, ImageNet mean/std"
LAYER_SHAPES = {"pool5": (2048,), "res4f": (196, 1024)}
RANDOM_SEED = 0
RANDOM_WEIGHTS = f"random (seed {RANDOM_SEED}; for tests only)"
TORCHVISION_WEIGHTS = "torchvision ResNet50_Weights.DEFAULT"
WEIGHT_URLS = {
    "IMAGENET1K_V2 (torchvision's default)": "https://download.pytorch.org/models/resnet50-11ad3fa6.pth",
    "IMAGENET1K_V1 (the original ResNet-50 training)": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
}
DESCRIPTION_SUFFIX = ".extractor.json"


class ExtractionError(Exception):
    """A problem with the images, the weights or the options; the message names the file."""


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
        "and pass it with --weights FILE (extractor_weights=FILE in Python)"
    )


def load_model(weights: Path | None, random_weights: bool) -> nn.Module:
    """ResNet-50 with the requested weights (a state_dict file, else torchvision's default
    download, or seeded random ones), on the CPU, in eval mode."""
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
    weights = Path(weights)
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


def weights_name(weights: Path | None, random_weights: bool) -> str:
    """How :func:`load_model` got its weights, in words (for the description)."""
    if random_weights:
        return RANDOM_WEIGHTS
    return TORCHVISION_WEIGHTS if weights is None else Path(weights).name


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


def resized_size(width: int, height: int, size: int = RESIZE) -> tuple[int, int]:
    """(width, height) with the shorter side scaled to ``size`` (torchvision's rounding)."""
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


def preprocess(image) -> torch.Tensor:
    """A PIL image to the network's input: RGB, resize (shorter side 256, bilinear), center
    crop 224, ImageNet normalization; ``3 x 224 x 224`` float32."""
    from PIL import Image

    image = image.convert("RGB")
    width, height = resized_size(*image.size)
    image = image.resize((width, height), Image.Resampling.BILINEAR)
    left = int(round((width - CROP) / 2.0))
    top = int(round((height - CROP) / 2.0))
    image = image.crop((left, top, left + CROP, top + CROP))
    pixels = (np.asarray(image, dtype=np.float32) / 255.0 - MEAN) / STD
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))


def read_image(path: str | os.PathLike) -> torch.Tensor:
    """The preprocessed image of the file ``path``; an unreadable one names the file."""
    try:
        from PIL import Image
    except ImportError as err:
        raise ExtractionError("reading images needs Pillow: pip install pillow") from err
    if not os.path.isfile(path):
        raise ExtractionError(f"no image at {path}")
    try:
        with Image.open(path) as image:
            return preprocess(image)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise ExtractionError(f"cannot read image {path}: {err}") from err


# ---------------------------------------------------------------------------------------------
# Descriptions of feature files


def describe(layer: str, model: nn.Module, weights: str, dtype: str) -> dict:
    """What made a feature file: the record that travels beside it and into checkpoints."""
    return {
        "extractor": EXTRACTOR,
        "preprocessing": PREPROCESSING,
        "layer": layer,
        "shape": list(LAYER_SHAPES[layer]),
        "weights": weights,
        "weights_sha256": weights_digest(model),
        "dtype": dtype,
    }


def description_path(features: str | os.PathLike) -> Path:
    """``DIR/NAME.npy`` -> ``DIR/NAME.extractor.json``."""
    path = Path(features)
    return path.with_name(path.name.removesuffix(".npy") + DESCRIPTION_SUFFIX)


def write_description(features: str | os.PathLike, description: dict) -> Path:
    path = description_path(features)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(description, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_description(features: str | os.PathLike) -> dict | None:
    """The description of a feature file: beside it, or beside the file a link points to;
    ``None`` when there is none (features not made by this module)."""
    for candidate in (features, os.path.realpath(features)):
        path = description_path(candidate)
        if path.is_file():
            try:
                description = json.loads(path.read_text(encoding="utf-8"))
            except ValueError as err:
                raise ExtractionError(f"cannot read {path}: {err}; extract again") from err
            if not isinstance(description, dict) or "layer" not in description:
                raise ExtractionError(f"{path} is not a feature description; extract again")
            return description
    return None


# ---------------------------------------------------------------------------------------------
# The extractor that a checkpoint's training features came from


class FeatureExtractor:
    """Features of new images, made as a description says (network, layer, dtype)."""

    def __init__(self, model: nn.Module, description: dict, device: str = "cpu") -> None:
        self.model = model.to(device).eval()
        self.description = description
        self.layer = description["layer"]
        self.dtype = np.dtype(description.get("dtype", "float32"))
        self.device = torch.device(device)

    def features(self, images: Sequence, batch_size: int = 16) -> np.ndarray:
        """``len(images) x shape`` float32 features of image paths or PIL images, rounded to
        the dtype of the training features (what extract_features.py would have written)."""
        rows = []
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            pixels = torch.stack([self._pixels(image, start + i) for i, image in enumerate(chunk)])
            with torch.inference_mode():
                output = forward_features(self.model, pixels.to(self.device), self.layer)
            rows.append(output.float().cpu().numpy().astype(self.dtype).astype(np.float32))
        return np.concatenate(rows)

    @staticmethod
    def _pixels(image, index: int) -> torch.Tensor:
        try:
            if isinstance(image, (str, os.PathLike)):
                return read_image(image)
            return preprocess(image)
        except (ExtractionError, AttributeError, OSError, ValueError) as err:
            raise ExtractionError(f"image {index + 1} ({image}): {err}") from err


def extractor_for(description: dict, weights: str | None = None, device: str = "cpu"):
    """The extractor a feature description names, with ``weights`` (a state_dict file) or
    else the weights it names; refuses weights or an extractor that are not those."""
    if description.get("extractor") != EXTRACTOR or description.get("layer") not in LAYER_SHAPES:
        raise ExtractionError(
            f"the training features came from {description.get('extractor')} "
            f"{description.get('layer')}, which this version cannot extract (it has "
            f"{EXTRACTOR} {' or '.join(LAYER_SHAPES)}): give features made the same way"
        )
    if description.get("preprocessing") != PREPROCESSING:
        raise ExtractionError(
            f"the training features were preprocessed as '{description.get('preprocessing')}', "
            f"this version does '{PREPROCESSING}': give features made the same way"
        )
    random_weights = weights is None and description.get("weights") == RANDOM_WEIGHTS
    model = load_model(None if weights is None else Path(weights), random_weights)
    digest = weights_digest(model)
    if digest != description.get("weights_sha256"):
        given = weights or weights_name(None, random_weights)
        raise ExtractionError(
            f"the training features came from ResNet-50 weights {description.get('weights')} "
            f"(sha256 {str(description.get('weights_sha256'))[:12]}...), but {given} has "
            f"sha256 {digest[:12]}...: features of other weights would mean nothing to the "
            "model; give the weights file the training features were extracted with"
        )
    return FeatureExtractor(model, description, device)
