"""Translate new captions with their images, from Python (``fairseq-mmt-translate`` wraps it).

Built on fairseq's hub interface (:class:`fairseq.hub_utils.GeneratorHubInterface`): the same
checkpoints, dictionaries and ``SequenceGenerator`` as ``fairseq-generate``, with each batch's
raw image features added to its ``net_input``, and fairseq's tokenizer and BPE: those that the
data directory's ``preprocessing.json`` records (:mod:`.text_pipeline`), or those given as in
fairseq's ``from_pretrained``::

    from fairseq_mmt_adv import MultimodalTranslator
    translator = MultimodalTranslator.from_pretrained("checkpoints/q-waae", "checkpoint_best.pt")
    translator.translate(["A dog runs on the beach."], images=["dog.jpg"])
    # a model directory in fairseq's layout (checkpoint, dict.*.txt, bpecodes):
    MultimodalTranslator.from_pretrained("model", "model.pt", tokenizer="moses", bpe="subword_nmt")

Images become features with the extractor that made the training features
(:mod:`fairseq_mmt_adv.translation.image_features`, recorded in the checkpoint); ``features=`` takes
features made beforehand. A text-only model (``--visual-fusion none``) needs neither.
"""

import logging
import os
from pathlib import Path

import numpy as np
import torch
from fairseq import hub_utils
from omegaconf import OmegaConf, open_dict

from fairseq_mmt_adv.data.feature_files import describe_shape, first_nonfinite_row
from fairseq_mmt_adv.translation.text_pipeline import TextPipeline, dictionaries

logger = logging.getLogger(__name__)


class TranslationInputError(ValueError):
    """Input that cannot be translated as given; the message names the line or the file."""


def data_directory(model_dir: Path, data_name_or_path: str) -> Path:
    """The directory with the dictionaries (``model_dir`` itself for "."), checked."""
    if data_name_or_path.startswith("."):
        data = model_dir / data_name_or_path
    else:
        data = Path(data_name_or_path)
    if not data.is_dir():
        raise FileNotFoundError(f"data directory {data} does not exist")
    if not dictionaries(data, TextPipeline.load(data)):
        raise FileNotFoundError(
            f"{data} has no fairseq dictionaries (dict.LANG.txt): give data_name_or_path= the "
            f"fairseq-preprocess directory, or copy it beside the checkpoints with: python -m "
            f"fairseq_mmt_adv.translation.text_pipeline copy DATA {model_dir}"
        )
    return data.resolve()


def text_options(pipeline: TextPipeline | None, overrides: dict) -> dict:
    """``overrides`` over the tokenizer and BPE options that ``pipeline`` records: a
    ``tokenizer=`` or ``bpe=`` given replaces the recorded one with all its options."""
    if pipeline is None:
        return dict(overrides)
    given = [key for key in ("tokenizer", "bpe") if key in overrides]
    if given:
        logger.info(f"{' and '.join(given)} as given, not as {pipeline.path} records")
    recorded = pipeline.fairseq_options("tokenizer" not in given, "bpe" not in given)
    return {**recorded, **overrides}


def model_languages(cfg, task, overrides: dict) -> None:
    """The tokenizer's languages, when not given: the task's (fairseq's default is 'en')."""
    if cfg.get("tokenizer") is None:
        return
    with open_dict(cfg):
        for key in ("source_lang", "target_lang"):
            language = getattr(task.cfg, key, None)  # inferred from the data when not given
            if key in cfg.tokenizer and key not in overrides and language:
                cfg.tokenizer[key] = language


def check_bpe_codes(cfg, model_dir: Path) -> None:
    """A BPE that needs codes (``subword_nmt``...) has a file of them."""
    bpe = cfg.get("bpe")
    if bpe is None or "bpe_codes" not in list(bpe):  # "in bpe" is False for a missing one
        return
    if OmegaConf.is_missing(bpe, "bpe_codes"):
        raise TranslationInputError(
            f"bpe={bpe._name} needs BPE codes: give bpe_codes=FILE (--bpe-codes FILE), or put "
            f"them in {model_dir / 'bpecodes'}"
        )
    if not os.path.isfile(bpe.bpe_codes):
        raise TranslationInputError(f"BPE codes {bpe.bpe_codes} (bpe_codes=) do not exist")


class MultimodalTranslator(hub_utils.GeneratorHubInterface):
    """A trained model of the plugin (or an ensemble) that translates raw captions."""

    def __init__(self, cfg, task, models, extractor_weights=None):
        super().__init__(cfg, task, models)
        self.extractor_weights = extractor_weights
        self._extractor = None
        self._batch_features: torch.Tensor | None = None

    @classmethod
    def from_pretrained(
        cls,
        model_dir: str | Path,
        checkpoint_file: str = "checkpoint_best.pt",
        data_name_or_path: str = ".",
        extractor_weights: str | None = None,
        **overrides,
    ) -> "MultimodalTranslator":
        """Load ``model_dir/checkpoint_file`` (``a.pt:b.pt`` for an ensemble) with the
        dictionaries of ``data_name_or_path`` (relative to ``model_dir`` when it starts with
        '.'), and the tokenizer and BPE its ``preprocessing.json`` records. ``extractor_weights``:
        a ResNet-50 state_dict file for ``images=`` (default: torchvision's). ``overrides`` set
        options of the checkpoint's configuration by name, as in fairseq's ``from_pretrained``
        (e.g. ``cpu=True``, ``batch_size=64``; ``tokenizer="moses"``, ``bpe="subword_nmt"``,
        ``bpe_codes=FILE``, found as ``model_dir/bpecodes`` too); a tokenizer's languages are
        the model's unless given."""
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise FileNotFoundError(f"model directory {model_dir} does not exist")
        for name in checkpoint_file.split(os.pathsep):
            if not (model_dir / name).is_file():
                raise FileNotFoundError(f"no checkpoint {model_dir / name}")
        data = data_directory(model_dir, data_name_or_path)
        overrides = text_options(TextPipeline.load(data), overrides)
        try:
            loaded = hub_utils.from_pretrained(
                str(model_dir), checkpoint_file, str(data), **overrides
            )
        except Exception as error:  # fairseq raises a bare Exception
            if "infer language pair" not in str(error):
                raise
            raise TranslationInputError(
                f"neither the checkpoint nor {data} (no preprocessing.json, no binarized data) "
                "tells the model's languages: give source_lang= and target_lang= "
                "(--source-lang and --target-lang)"
            ) from error
        model_languages(loaded["args"], loaded["task"], overrides)
        check_bpe_codes(loaded["args"], model_dir)
        return cls(loaded["args"], loaded["task"], loaded["models"], extractor_weights)

    @property
    def uses_image(self) -> bool:
        """Whether the model (any model of the ensemble) fuses the image."""
        return any(getattr(model, "uses_image", True) for model in self.models)

    # ------------------------------------------------------------------ translation

    def translate(self, sentences, images=None, features=None, beam: int = 5, **kwargs):
        """Raw captions in, detokenized translations out; ``images`` (paths or PIL images)
        or ``features`` (N x D or N x K x D) give each caption its image."""
        return self.sample(sentences, beam, images=images, features=features, **kwargs)

    def sample(self, sentences, beam: int = 1, verbose: bool = False, **kwargs):
        """fairseq's hub ``sample``; one caption (a string) takes one image or feature row."""
        if isinstance(sentences, str):
            kwargs.update(one_image(kwargs.pop("images", None), kwargs.pop("features", None)))
            return self.sample([sentences], beam, verbose, **kwargs)[0]
        for number, sentence in enumerate(sentences, start=1):
            if not sentence.strip():
                raise TranslationInputError(f"caption {number} is empty: give every caption text")
        return super().sample(sentences, beam, verbose, **kwargs)

    def generate(
        self, tokenized_sentences, beam=5, verbose=False, images=None, features=None, **kwargs
    ):
        """fairseq's hub ``generate`` (hypotheses with tokens and scores), with the images."""
        if torch.is_tensor(tokenized_sentences) and tokenized_sentences.dim() == 1:
            one = one_image(images, features)
            return self.generate([tokenized_sentences], beam, verbose, **one, **kwargs)[0]
        self._batch_features = self.visual_features(len(tokenized_sentences), images, features)
        try:
            return super().generate(tokenized_sentences, beam, verbose, **kwargs)
        finally:
            self._batch_features = None

    def _build_batches(self, tokens, skip_invalid_size_inputs):
        for batch in super()._build_batches(tokens, skip_invalid_size_inputs):
            if self._batch_features is not None:  # raw: the task normalizes them
                batch["net_input"]["visual_features"] = self._batch_features[batch["id"]]
            yield batch

    # ------------------------------------------------------------------ images

    def visual_features(self, count: int, images=None, features=None) -> torch.Tensor | None:
        """Raw features (count x ...) for the captions, checked against the model's."""
        if not self.uses_image:
            return None  # a text-only model: the image plays no part
        if images is None and features is None:
            raise TranslationInputError(
                "this model fuses the image: give images= (paths or PIL images) or features= "
                "(an N x D or N x K x D array), one per caption"
            )
        if images is not None and features is not None:
            raise TranslationInputError("give images= or features=, not both")
        if images is not None:
            if len(images) != count:
                raise TranslationInputError(f"{len(images)} images for {count} captions")
            features = self.extract(images)
        return self.checked_features(features, count)

    def checked_features(self, features, count: int, source: str = "features") -> torch.Tensor:
        """``features`` as a float32 tensor, after checking that they are one finite row per
        caption of the size the model was trained on; errors name ``source``."""
        features = np.asarray(features)
        expected = self.task.state.visual_feature_shape or [self.task.visual_feature_dim]
        if features.ndim not in (2, 3):
            raise TranslationInputError(
                f"{source} has shape {features.shape}: give an N x D or N x K x D array, one "
                "row per caption"
            )
        if len(features) != count:
            raise TranslationInputError(
                f"{source} has {len(features)} rows for {count} captions: give one row per "
                "caption, in the same order"
            )
        if list(features.shape[1:]) != list(expected):
            raise TranslationInputError(
                f"{source} holds {describe_shape(features.shape[1:])} features, but the model "
                f"was trained on {describe_shape(expected)} ones: use the same extractor and layer"
            )
        features = features.astype(np.float32)
        row = first_nonfinite_row(features)
        if row is not None:
            raise TranslationInputError(f"{source}: row {row} (caption {row + 1}) holds NaN or inf")
        return torch.from_numpy(features)

    def extract(self, images) -> np.ndarray:
        """Features of ``images`` from the extractor the training features came from."""
        from fairseq_mmt_adv.translation import image_features

        trained = self.task.state.visual_feature_extractor
        if trained is None:
            raise TranslationInputError(
                "the checkpoint does not record which extractor made its training features "
                "(they were not made by scripts/extract_features.py, or the checkpoint is "
                "older): give features= (--features FILE.npy) made the same way instead of images"
            )
        try:
            if self._extractor is None:
                device = "cuda" if self.device.type == "cuda" else "cpu"
                self._extractor = image_features.extractor_for(
                    trained, weights=self.extractor_weights, device=device
                )
            return self._extractor.features(list(images))
        except image_features.ExtractionError as error:
            raise TranslationInputError(str(error)) from error


def one_image(images, features) -> dict:
    """The image arguments of one caption as those of a list of one."""
    return {
        "images": None if images is None else [images],
        "features": None if features is None else np.asarray(features)[None],
    }


def checkpoint_directory(path: str) -> tuple[str, str]:
    """``(directory, file names)`` of a ``--path a.pt:b.pt`` (checkpoints of one directory)."""
    paths = path.split(os.pathsep)
    directories = {os.path.dirname(os.path.abspath(p)) for p in paths}
    if len(directories) != 1:
        raise TranslationInputError(f"--path {path}: give checkpoints of one directory")
    return directories.pop(), os.pathsep.join(os.path.basename(p) for p in paths)
