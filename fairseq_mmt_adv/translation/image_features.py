"""ResNet-50 image features: the one network, preprocessing and layer definition that
``scripts/extract_features.py``, ``fairseq-mmt-translate`` and ``MultimodalTranslator`` share.

* The network is torchvision's ``resnet50``; its layers are taken by name with torchvision's
  ``create_feature_extractor``: ``pool5`` gives ``(N, 2048)`` (the flattened global average pool
  of the last block), ``res4f`` gives ``(N, 196, 1024)`` (the output of ``layer3`` for a
  224 x 224 input, its 14 x 14 locations flattened row-major). Images go through torchvision's
  transforms: resize (shorter side 256, bilinear), center crop 224, ImageNet mean and std.
* A feature file ``DIR/NAME.npy`` made here has a *description* beside it,
  ``DIR/NAME.extractor.json``: the extractor, its preprocessing, the layer, the weights (name and
  sha256 of their state_dict) and the dtype. The task records the train split's description in
  the checkpoint; :func:`extractor_for` rebuilds that extractor for new images, and refuses when
  the weights at hand are not those.
* Weights: a state_dict file (``--weights FILE``), torchvision's default ImageNet weights when
  the internet is there, or seeded random weights (tests only).

Needs torch, numpy, and torchvision (imported when first needed) and Pillow for images; uses no
fairseq.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import nn

from fairseq_mmt_adv.translation.torchvision_cpu import import_torchvision

EXTRACTOR = "resnet50"
RESIZE = 256
CROP = 224
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
PREPROCESSING = f"resize {RESIZE} (shorter side, bilinear), center crop {CROP}, ImageNet mean/std"
LAYER_SHAPES = {"pool5": (2048,), "res4f": (196, 1024)}
LAYER_NODES = {"pool5": "flatten", "res4f": "layer3"}  # nodes of torchvision's resnet50 graph
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
# The network: torchvision's ResNet-50


def torchvision() -> ModuleType:
    """``torchvision``; an ExtractionError that says what to install when it is missing."""
    try:
        return import_torchvision()
    except ImportError as err:
        raise ExtractionError(
            f"image features need torchvision ({err}): install the features extra (pip install "
            "-e '.[features]'), or by hand the torchvision release made for your torch"
        ) from err


def build_resnet50() -> nn.Module:
    """torchvision's ResNet-50, before loading weights."""
    return torchvision().models.resnet50(weights=None)


def randomize_(model: nn.Module, seed: int = RANDOM_SEED) -> None:
    """Seeded initialisation (torchvision's rules for conv and batch norm, drawn from one
    generator): the same weights, and sha256, on every machine."""
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
        models = torchvision().models
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


def feature_network(model: nn.Module, layer: str) -> nn.Module:
    """The part of ``model`` (torchvision's resnet50) that computes ``layer``, as torchvision's
    ``create_feature_extractor`` cuts it: it returns ``{layer: output}``."""
    torchvision()  # imported here first (see torchvision_cpu)
    from torchvision.models.feature_extraction import create_feature_extractor

    return create_feature_extractor(model, {LAYER_NODES[layer]: layer}).eval()


def forward_features(network: nn.Module, images: torch.Tensor, layer: str) -> torch.Tensor:
    """``pool5``: ``(B, 2048)``; ``res4f``: ``(B, H*W, 1024)`` from layer3, row-major."""
    output = network(images)[layer]
    return output.flatten(2).transpose(1, 2) if layer == "res4f" else output


# ---------------------------------------------------------------------------------------------
# Images


@functools.cache
def transform():
    """torchvision's transforms from a PIL image to the network's input, ``3 x 224 x 224``."""
    transforms = torchvision().transforms
    return transforms.Compose(
        [
            transforms.Resize(RESIZE, transforms.InterpolationMode.BILINEAR),
            transforms.CenterCrop(CROP),
            transforms.ToTensor(),
            transforms.Normalize(MEAN, STD),
        ]
    )


def preprocess(image) -> torch.Tensor:
    """A PIL image to the network's input: RGB, then :func:`transform`; float32."""
    return transform()(image.convert("RGB"))


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
        self.description = description
        self.layer = description["layer"]
        self.network = feature_network(model, self.layer).to(device)
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
                output = forward_features(self.network, pixels.to(self.device), self.layer)
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
