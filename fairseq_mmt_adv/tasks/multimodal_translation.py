"""The ``multimodal_translation`` task: translation whose samples carry the image's feature."""

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from fairseq.dataclass import ChoiceEnum
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask
from omegaconf import II

from fairseq_mmt_adv.checkpoints.loading import check_intact, read_task_state
from fairseq_mmt_adv.data.dictionaries import (
    dictionary_differences,
    dictionary_path,
    dictionary_record,
)
from fairseq_mmt_adv.data.feature_files import (
    NEEDS_FEATURES,
    VisualFeatureError,
    describe_shape,
    feature_path,
    open_feature_file,
)
from fairseq_mmt_adv.data.multimodal_language_pair_dataset import MultimodalLanguagePairDataset
from fairseq_mmt_adv.data.visual_features import VisualFeatureDataset, feature_statistics
from fairseq_mmt_adv.models.contract import MultimodalModel
from fairseq_mmt_adv.models.text_start import check_frozen, start_from
from fairseq_mmt_adv.models.visual_input import CONSTANT, NORMALIZATIONS
from fairseq_mmt_adv.modules.diverse_beam_search import DiverseBeamSearchByRow

logger = logging.getLogger(__name__)

# Seed of the fixed permutation used by --shuffle-visual-features (incongruent-image test).
INCONGRUENT_IMAGES_SEED = 1


@dataclass
class MultimodalTranslationConfig(TranslationConfig):
    visual_features: Optional[str] = field(
        default=None,
        metadata={"help": "directory with one DIR/{split}.npy of image features per split"},
    )
    visual_feature_norm: ChoiceEnum(NORMALIZATIONS) = field(
        default="standardize",
        metadata={"help": "feature normalization; decoding uses the checkpoint's"},
    )
    shuffle_visual_features: bool = field(
        default=False,
        metadata={"help": "evaluation only: give each sentence another sentence's image"},
    )
    accept_new_train_features: bool = field(
        default=False,
        metadata={"help": "resume on train features that differ from the checkpoint's"},
    )
    rebuild_batches: bool = field(
        default=True,
        metadata={"help": "new batches every epoch, so that a resumed run sees the same ones"},
    )
    # where the model runs (read from fairseq's own flags; no flags of their own)
    cpu: bool = II("common.cpu")
    fp16: bool = II("common.fp16")
    bf16: bool = II("common.bf16")
    amp: bool = II("common.amp")
    # where fairseq-train resumes from
    save_dir: str = II("checkpoint.save_dir")
    restore_file: str = II("checkpoint.restore_file")
    checkpoint_suffix: str = II("checkpoint.checkpoint_suffix")
    finetune_from_model: Optional[str] = II("checkpoint.finetune_from_model")
    reset_optimizer: bool = II("checkpoint.reset_optimizer")
    reset_dataloader: bool = II("checkpoint.reset_dataloader")
    # what fairseq-generate decodes with (--path)
    checkpoint_paths: Optional[str] = II("common_eval.path")


def refuse_half_precision_on_cpu(cfg) -> None:
    """fairseq's --fp16 needs CUDA, --bf16 means a TPU to it, and --amp does nothing on a CPU."""
    flags = [f"--{name}" for name in ("fp16", "bf16", "amp") if getattr(cfg, name, False)]
    if flags and (getattr(cfg, "cpu", False) or not torch.cuda.is_available()):
        raise ValueError(
            f"{' '.join(flags)} on the CPU: fairseq's --fp16 needs a CUDA GPU, its --bf16 a TPU, "
            "and its --amp does nothing on a CPU. On the CPU train and decode in float32: drop "
            f"{' and '.join(flags)}."
        )


def same_value(a, b) -> bool:
    """Equality of task-state values: ints, shape lists, (mean, std) pairs of tensors."""
    if isinstance(a, (tuple, list)) and a and isinstance(a[0], torch.Tensor):
        return all(
            x.shape == y.shape and torch.allclose(x, y, rtol=1e-4, atol=1e-6)
            for x, y in zip(a, b, strict=True)
        )
    return list(a) == list(b) if isinstance(a, (tuple, list)) else a == b


def describe(key: str, value) -> str:
    if key == "visual_feature_shape":
        return describe_shape(value)
    if key == "visual_feature_stats":
        mean, std = value
        return f"mean {mean.mean().item():.4g} / std {std.mean().item():.4g} (averaged over D)"
    return str(value)


# The task state that says what the model was trained on, compared when a run resumes.
TRAINED_ON = ("visual_feature_dim", "visual_feature_shape", "visual_feature_stats")


@register_task("multimodal_translation", dataclass=MultimodalTranslationConfig)
class MultimodalTranslationTask(TranslationTask):
    """Translation whose batches also carry ``net_input["visual_features"]``.

    What the model was trained on is task state, saved in checkpoints: the feature directory
    (absolute), the features' shape (pooled D or spatial K x D), the normalization and, for
    ``standardize``, the train split's statistics. Decoding checks and normalizes features as
    training did, without the train features at hand; a resumed run keeps them too.
    Batches carry raw features; the model normalizes them (:meth:`visual_normalization` is
    what it is built with).
    """

    cfg: MultimodalTranslationConfig

    def __init__(self, cfg: MultimodalTranslationConfig, src_dict, tgt_dict) -> None:
        super().__init__(cfg, src_dict, tgt_dict)
        refuse_half_precision_on_cpu(cfg)
        for path in (cfg.checkpoint_paths or "").split(os.pathsep):
            check_intact(path)  # before fairseq reads it
        # the model built last; fairseq builds the criterion for it next (see build_model)
        self.trained_model = None
        self._decoding_state = False  # True once a checkpoint's state has been loaded
        self._resume_checked = False
        self.state.add_factory("visual_features_dir", self._given_features_dir)
        self.state.add_factory("visual_feature_dim", lambda: self._trained_on("visual_feature_dim"))
        self.state.add_factory(
            "visual_feature_shape", lambda: self._trained_on("visual_feature_shape")
        )
        self.state.add_factory(
            "visual_feature_stats", lambda: self._trained_on("visual_feature_stats")
        )
        self.state.add_factory("visual_feature_norm", lambda: str(self.cfg.visual_feature_norm))
        self.state.add_factory("visual_feature_extractor", self._train_feature_extractor)
        self.state.add_factory(
            "dictionaries", lambda: dictionary_record(self.src_dict, self.tgt_dict)
        )

    @property
    def visual_feature_dim(self) -> int | None:
        """Feature size D the model is built for (that of the train split's features); None
        when it is trained without features."""
        return self.state.visual_feature_dim

    # ------------------------------------------------------------------ where the features are

    def _given_features_dir(self) -> str | None:
        """``--visual-features``; None for a text-only model and criterion, which need none."""
        if not self.cfg.visual_features:
            return None
        return os.path.abspath(self.cfg.visual_features)

    def features_dir(self, task_cfg=None) -> str | None:
        """``--visual-features`` if given, else the directory the checkpoint stores (None: the
        model was trained without features)."""
        if self.cfg.visual_features or not self._decoding_state:
            return self._given_features_dir()
        if "visual_features_dir" in self.state.state_dict:
            stored = self.state.state_dict["visual_features_dir"]
        else:  # a checkpoint written before the directory was task state
            stored = getattr(task_cfg, "visual_features", None) or self._given_features_dir()
            if stored is None:
                raise VisualFeatureError(NEEDS_FEATURES)
            if not os.path.isabs(stored):
                logger.warning(
                    f"the checkpoint stores the relative feature directory {stored}: taken as "
                    f"{os.path.abspath(stored)}; give --visual-features DIR to use another"
                )
        if stored is None:
            return None
        logger.info(
            f"visual features from the directory stored in the checkpoint: {stored} (give "
            "--visual-features DIR to use another)"
        )
        return os.path.abspath(stored)

    def _train_features(self):
        return open_feature_file(self._train_path())

    def _train_feature_extractor(self) -> dict | None:
        """Which extractor and layer made the train features (their description file, written
        by scripts/extract_features.py); None when unknown."""
        if self._decoding_state or self.state.visual_features_dir is None:
            return None  # a checkpoint written before the extractor was recorded, or text only
        from fairseq_mmt_adv.translation import image_features

        return image_features.read_description(self._train_path())

    def _measure(self, key: str):
        """``key`` of the task state, measured on the train split's features."""
        if key == "visual_feature_dim":
            return int(self._train_features().shape[-1])
        if key == "visual_feature_shape":
            return list(self._train_features().shape[1:])
        path = self._train_path()
        logger.info(f"computing visual feature mean/std over {path}")
        mean, std = feature_statistics(self._train_features())
        constant = int((std <= CONSTANT).sum())
        if constant:
            logger.warning(
                f"{constant} of {len(std)} feature dimensions are constant over {path}: they "
                "carry no information, and are set to 0 whatever their value when decoding"
            )
        return mean, std

    def _trained_on(self, key: str):
        """``key`` of what the model is trained on: the resumed checkpoint's, else measured."""
        if not self._decoding_state and not self._resume_checked:
            self._resume_checked = True
            self._adopt_resumed_state()
        if not self._decoding_state and self.state.visual_features_dir is None:
            return None  # trained without features: a text-only model
        if key in self.state.state_dict:
            return self.state.state_dict[key]
        if key == "visual_feature_shape" and self._decoding_state:
            return None  # a checkpoint written before the shape was recorded: D is checked
        return self._measure(key)

    # ------------------------------------------------------------------ resuming

    def loaded_checkpoint(self) -> tuple[str, bool] | None:
        """The checkpoint fairseq-train loads, as fairseq chooses it, and whether the run
        resumes from it (True) or only starts from its weights (False): ``--finetune-from-model``
        on a first launch, or ``--restore-file`` with ``--reset-optimizer --reset-dataloader``.
        None when the run starts from scratch."""
        suffix = self.cfg.checkpoint_suffix or ""
        if self.cfg.restore_file == "checkpoint_last.pt":
            last = os.path.join(self.cfg.save_dir, f"checkpoint_last{suffix}.pt")
            if os.path.isfile(last):
                return last, True
            finetune = getattr(self.cfg, "finetune_from_model", None)
            return (finetune, False) if finetune else None
        restore = self.cfg.restore_file.replace(".pt", f"{suffix}.pt")
        if not os.path.isfile(restore):
            return None
        fresh = getattr(self.cfg, "reset_optimizer", False) and getattr(
            self.cfg, "reset_dataloader", False
        )
        return restore, not fresh

    def resume_checkpoint(self) -> str | None:
        """The checkpoint fairseq-train resumes from, if it resumes (:meth:`loaded_checkpoint`)."""
        loaded = self.loaded_checkpoint()
        return loaded[0] if loaded is not None and loaded[1] else None

    def initial_checkpoint(self) -> str | None:
        """The checkpoint whose weights a new run starts from (:meth:`loaded_checkpoint`)."""
        loaded = self.loaded_checkpoint()
        return loaded[0] if loaded is not None and not loaded[1] else None

    def _adopt_resumed_state(self) -> None:
        """When training resumes, take what the model was trained on from the checkpoint, after
        checking that the train features now given are the same (fairseq restores the model,
        but not the task's state, on resume)."""
        path = self.resume_checkpoint()
        if path is None:
            return
        stored = read_task_state(path)
        self.check_dictionaries(stored.get("dictionaries"), path)
        if self.state.visual_features_dir is None:
            if stored.get("visual_feature_dim") is not None:
                raise VisualFeatureError(
                    f"resuming {path}, trained on image features, without them: {NEEDS_FEATURES}"
                )
            return
        measured = {key: self._measure(key) for key in TRAINED_ON if key in stored}
        differences = [
            f"{key}: the checkpoint's is {describe(key, stored[key])}, {self._train_path()} "
            f"gives {describe(key, value)}"
            for key, value in measured.items()
            if not same_value(stored[key], value)
        ]
        if stored.get("visual_feature_norm", self.cfg.visual_feature_norm) != str(
            self.cfg.visual_feature_norm
        ):
            differences.append(
                f"normalization: the checkpoint's is {stored['visual_feature_norm']}, "
                f"--visual-feature-norm is {self.cfg.visual_feature_norm}"
            )
        sizes_differ = any(key in d for d in differences for key in TRAINED_ON[:2])
        if differences and (sizes_differ or not self.cfg.accept_new_train_features):
            raise VisualFeatureError(
                f"resuming {path}, trained on other features than those given now: "
                + "; ".join(differences)
                + ". Resume with the --visual-features directory and options it was trained "
                "with, or start a new --save-dir"
                + (
                    ""
                    if sizes_differ
                    else ", or give --accept-new-train-features to go on "
                    "with these, normalized as the checkpoint's were"
                )
            )
        if differences:
            logger.warning(f"--accept-new-train-features: {'; '.join(differences)}")
        keys = [*TRAINED_ON, "visual_feature_norm"]
        self.state.merge_state_dict({k: stored[k] for k in keys if k in stored})
        logger.info(f"visual feature state of {path} restored ({', '.join(sorted(stored))})")

    def _train_path(self) -> str:
        return feature_path(self.state.visual_features_dir, self.cfg.train_subset)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """A checkpoint's task state (fairseq calls this when it loads a model to decode)."""
        self.check_dictionaries(state_dict.get("dictionaries"), self.cfg.checkpoint_paths)
        self._decoding_state = True
        super().load_state_dict(state_dict)

    def check_dictionaries(self, recorded: dict | None, checkpoint: str | None) -> None:
        """Refuse dictionaries other than those the checkpoint's model was trained with."""
        checkpoint = checkpoint or "the checkpoint"
        if recorded is None:
            logger.warning(
                f"{checkpoint} records no digest of its dictionaries (written before they were "
                "recorded): nothing checks that the data directory's are the model's"
            )
            return
        langs = {"source": self.cfg.source_lang, "target": self.cfg.target_lang}
        paths = {side: dictionary_path(self.cfg.data, lang) for side, lang in langs.items()}
        current = dictionary_record(self.src_dict, self.tgt_dict)
        differences = dictionary_differences(recorded, current, paths)
        if differences:
            raise ValueError(
                f"{checkpoint} was trained with other dictionaries than "
                + "; ".join(differences)
                + ". Give the fairseq-preprocess directory the model was trained on, or "
                "binarize the data with its dictionaries (fairseq-preprocess --srcdict "
                "--tgtdict from the model's directory)"
            )

    # ------------------------------------------------------------------ normalization

    def visual_normalization(self) -> tuple[str, torch.Tensor | None, torch.Tensor | None]:
        """``(method, mean, std)`` that the model normalizes its raw features with: the
        checkpoint's when decoding, else ``--visual-feature-norm`` with the train statistics."""
        if self.visual_feature_dim is None:
            return "none", None, None  # trained without features
        method = str(self.state.visual_feature_norm)
        if method != "standardize":
            return method, None, None
        mean, std = self.state.visual_feature_stats
        return method, mean, std

    def build_generator(self, models, args, seq_gen_cls=None, extra_gen_cls_kwargs=None, **kw):
        """fairseq's generator; with ``--diverse-beam-groups`` its search is mended so that
        batches after the first decode (:mod:`fairseq_mmt_adv.modules.diverse_beam_search`)."""
        generator = super().build_generator(
            models, args, seq_gen_cls=seq_gen_cls, extra_gen_cls_kwargs=extra_gen_cls_kwargs, **kw
        )
        groups = getattr(args, "diverse_beam_groups", -1) or -1
        if groups > 0 and hasattr(generator, "search"):
            strength = getattr(args, "diverse_beam_strength", 0.5)
            generator.search = DiverseBeamSearchByRow(self.target_dictionary, groups, strength)
        return generator

    # ------------------------------------------------------------------ data and model

    def load_dataset(self, split: str, epoch: int = 1, combine: bool = False, **kwargs) -> None:
        """Load a split's sentences (as ``translation`` does) and its aligned raw features.

        ``fairseq-generate`` passes the checkpoint's task config as ``task_cfg``: for checkpoints
        that predate the task state, its feature directory and normalization are used.
        """
        task_cfg = kwargs.pop("task_cfg", None)
        if task_cfg is not None and "visual_feature_norm" not in self.state.state_dict:
            self.state.merge_state_dict({"visual_feature_norm": str(task_cfg.visual_feature_norm)})
        super().load_dataset(split, epoch=epoch, combine=combine, **kwargs)
        sentences = self.datasets[split]
        features_dir = self.features_dir(task_cfg)
        if features_dir is None:  # a text-only model and criterion: batches carry no features
            logger.info(f"{split}: no visual features (no --visual-features)")
            self.datasets[split] = MultimodalLanguagePairDataset(sentences, None)
            return
        shuffle = self.cfg.shuffle_visual_features and split != self.cfg.train_subset
        features = VisualFeatureDataset(
            feature_path(features_dir, split),
            num_sentences=len(sentences),
            expected_dim=self.visual_feature_dim,
            expected_shape=self.state.visual_feature_shape,
            shuffle_seed=INCONGRUENT_IMAGES_SEED if shuffle else None,
        )
        logger.info(
            f"{split}: {len(features)} visual features, {describe_shape(features.shape)}, from "
            f"{features.path} ({self.state.visual_feature_norm} normalization"
            f"{', shuffled' if shuffle else ''})"
        )
        self.datasets[split] = MultimodalLanguagePairDataset(sentences, features)

    def build_model(self, cfg, from_checkpoint: bool = False):
        """Build the model, and remember it as the one that the criterion built next trains:
        ``adversarial_reconstruction`` sizes G and D by its ``final_hidden_size``. A model
        that fairseq-train then loads from a text model's checkpoint is prepared for it
        (:func:`~fairseq_mmt_adv.models.text_start.start_from`)."""
        self.trained_model = model = super().build_model(cfg, from_checkpoint)
        _ = self.state.visual_feature_extractor  # measured now, so that checkpoints record it
        _ = self.state.dictionaries
        if not from_checkpoint and isinstance(model, MultimodalModel):
            initial = self.initial_checkpoint()
            if initial is not None:
                start_from(model, self, initial, cfg)
            if getattr(cfg, "freeze_text_model", False):
                check_frozen(model, self.loaded_checkpoint())
        return model
