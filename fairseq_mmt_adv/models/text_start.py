"""Starting a multimodal model from a text model: ``fairseq-train ... --finetune-from-model
TEXT.pt`` (or ``--restore-file TEXT.pt`` with the ``--reset-*`` flags).

``TEXT.pt`` is a checkpoint of a text model of the family: fairseq's own ``transformer``
(``--task translation``) for ``transformer_mmt``, or a model of the plugin trained with
``--visual-fusion none``. Its weights are the multimodal model's text weights; what the text
model lacks (the fusion's parameters, the encoder's feature normalization) comes from the
model being trained, whose fusion is set to its identity (``Fusion.init_identity``, declared
in the fusion registry), so that before the first update the model computes the text model's
function: exactly for ``gated``, within sigmoid(-10) for ``selective-attn``. A fusion that
declares no identity (the cGRU's ``ctx-mul``) cannot start from a text model.

fairseq loads the checkpoint later, strictly, inside an ``except`` that replaces every reason
by "please ensure that the architectures match"; so the task checks it here, when it builds the
model, and refuses with both sides named: another family, a multilingual model that needs
language tokens, another language pair, a flag that changes the function
(``--encoder-embed-dim``...), other dictionaries, other parameter shapes.
"""

import logging
import os
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

from fairseq.data import Dictionary
from fairseq.models import ARCH_MODEL_NAME_REGISTRY
from omegaconf import OmegaConf

from fairseq_mmt_adv.checkpoints.loading import read_mapped
from fairseq_mmt_adv.data.dictionaries import (
    dictionary_differences,
    dictionary_digest,
    dictionary_path,
    dictionary_record,
)
from fairseq_mmt_adv.fusions.registry import FUSION_REGISTRY

logger = logging.getLogger(__name__)

# Tasks whose models read language tokens (``__en__``) that multimodal_translation does not add.
MULTILINGUAL_TASKS = (
    "translation_multi_simple_epoch",
    "multilingual_translation",
    "semisupervised_translation",
    "translation_from_pretrained_bart",
    "multilingual_denoising",
)
LANGUAGE_TOKEN_FLAGS = ("encoder_langtok", "decoder_langtok", "lang_tok_style", "langs")


class TextStartError(ValueError):
    """A checkpoint that the model cannot start from; the message names both sides."""


@dataclass
class SourceCheckpoint:
    """What a checkpoint says of its model, read without loading its tensors."""

    path: str
    model_cfg: Any  # argparse.Namespace (legacy architectures) or a dict
    task_cfg: Any
    task_state: dict
    shapes: dict[str, tuple[int, ...]]

    @property
    def arch(self) -> str:
        return str(option(self.model_cfg, "arch") or option(self.model_cfg, "_name"))

    @property
    def model_name(self) -> str | None:
        """The fairseq model its architecture belongs to (``transformer``, ``lstm``...)."""
        return ARCH_MODEL_NAME_REGISTRY.get(self.arch)

    @property
    def fusion(self) -> str | None:
        return option(self.model_cfg, "visual_fusion")

    @property
    def task(self) -> str:
        return str(option(self.task_cfg, "_name") or option(self.task_cfg, "task"))

    def describe(self) -> str:
        fusion = f" --visual-fusion {self.fusion}" if self.fusion else ""
        return f"{self.path} (--arch {self.arch}{fusion}, --task {self.task})"


def option(cfg: Any, name: str, default=None):
    """``cfg.name`` of a stored configuration: a namespace or a dict."""
    if isinstance(cfg, dict):
        return cfg.get(name, default)
    return getattr(cfg, name, default)


def read_source(path: str) -> SourceCheckpoint:
    """The configuration, task state and parameter shapes of checkpoint ``path``."""
    if not os.path.isfile(path):
        raise TextStartError(f"{path} does not exist: give the text model's checkpoint file")
    state = read_mapped(path)
    cfg = state.get("cfg") or {}
    model_cfg = option(cfg, "model") or state.get("args")
    task_cfg = option(cfg, "task") or state.get("args")
    if model_cfg is None or "model" not in state:
        raise TextStartError(f"{path} holds no fairseq model (no 'cfg' or 'model' entry)")
    shapes = {key: tuple(value.shape) for key, value in state["model"].items()}
    return SourceCheckpoint(path, model_cfg, task_cfg, state.get("task_state") or {}, shapes)


def start_kind(model, source: SourceCheckpoint) -> str | None:
    """``"text"`` when ``model`` starts from the text model ``source``; None when ``source`` is
    a model of the same kind (fairseq loads it as it is); else :class:`TextStartError`."""
    ours = f"--arch {model.arch_name}* --visual-fusion {model.fusion_name}"
    own_model = ARCH_MODEL_NAME_REGISTRY[model.arch_name]
    if source.model_name == own_model and source.fusion == model.fusion_name:
        return None
    if source.model_name == own_model and source.fusion == "none":
        return "text"
    if source.model_name in model.text_model_families:
        return "text"
    families = [f"fairseq's {name} (--arch {name}*)" for name in model.text_model_families]
    starts = " or ".join([*families, f"{model.arch_name} --visual-fusion none"])
    what = (
        f"fuses the image with --visual-fusion {source.fusion}"
        if source.model_name == own_model
        else f"is a model of another family ({source.model_name or 'unregistered'})"
    )
    raise TextStartError(
        f"{source.describe()} {what}; this run's model ({ours}) starts from a text model: {starts}"
    )


def check_monolingual(source: SourceCheckpoint) -> None:
    """Refuse a multilingual model, whose input carries language tokens."""
    flags = [
        f"--{name.replace('_', '-')} {value}"
        for name in LANGUAGE_TOKEN_FLAGS
        if (value := option(source.task_cfg, name)) not in (None, False, "", [])
    ]
    if source.task in MULTILINGUAL_TASKS or flags:
        raise TextStartError(
            f"{source.describe()} is a multilingual model{described(flags)}: "
            "it reads language tokens (such as __en__) that --task multimodal_translation does "
            "not add to its sentences. Start from a bilingual text model of this language pair "
            "(--task translation, or multimodal_translation --visual-fusion none)"
        )


def described(flags: list[str]) -> str:
    return f" ({', '.join(flags)})" if flags else ""


def check_languages(task, source: SourceCheckpoint) -> None:
    """The text model must translate this run's language pair (where both say it)."""
    for side in ("source_lang", "target_lang"):
        theirs, ours = option(source.task_cfg, side), getattr(task.cfg, side, None)
        if theirs and ours and theirs != ours:
            pair = (
                f"{option(source.task_cfg, 'source_lang')}-{option(source.task_cfg, 'target_lang')}"
            )
            raise TextStartError(
                f"{source.describe()} translates {pair}, and this run "
                f"{task.cfg.source_lang}-{task.cfg.target_lang} (--{side.replace('_', '-')}): "
                "start from a text model of this run's language pair"
            )


def check_options(model, model_cfg, source: SourceCheckpoint) -> None:
    """The flags that shape the model's function must be the text model's."""
    ours, theirs = (
        model.architecture_options(model_cfg),
        model.architecture_options(source.model_cfg),
    )
    differences = [
        f"--{flag.replace('_', '-')} is {theirs.get(flag)!r} there, {value!r} here"
        for flag, value in ours.items()
        if theirs.get(flag) != value
    ]
    if differences:
        raise TextStartError(
            f"{source.describe()} was built with other options than this run's model: "
            + "; ".join(differences)
            + ". Give this run the text model's values"
        )


def source_dictionaries(task, source: SourceCheckpoint) -> dict:
    """Digests of the text model's ``dict.LANG.txt`` where they can be found: beside the
    checkpoint (fairseq's model directories), else in the data directory it was trained on."""
    data = str(option(source.task_cfg, "data") or "").split(os.pathsep)[0]
    found = {}
    for side in ("source", "target"):
        lang = option(source.task_cfg, f"{side}_lang") or getattr(task.cfg, f"{side}_lang")
        for directory in (os.path.dirname(os.path.abspath(source.path)), data):
            path = os.path.join(directory, f"dict.{lang}.txt") if directory else ""
            if path and os.path.isfile(path):
                found[side] = dictionary_digest(Dictionary.load(path))
                break
    return found


def check_dictionaries(task, source: SourceCheckpoint) -> None:
    """The data's dictionaries must be the text model's: their digests where the checkpoint
    records them (a model of the plugin) or its dictionary files can be found, and always the
    sizes of its embeddings."""
    langs = {"source": task.cfg.source_lang, "target": task.cfg.target_lang}
    paths = {side: dictionary_path(task.cfg.data, lang) for side, lang in langs.items()}
    current = dictionary_record(task.src_dict, task.tgt_dict)
    recorded = source.task_state.get("dictionaries") or source_dictionaries(task, source)
    differences = dictionary_differences(recorded, current, paths)
    for side, part in (("source", "encoder"), ("target", "decoder")):
        rows = source.shapes.get(f"{part}.embed_tokens.weight", (None,))[0]
        if rows not in (None, current[side]["size"]) and not any(side in d for d in differences):
            differences.append(
                f"{paths[side]} ({side}): {current[side]['size']} entries, the model's "
                f"embeddings {rows}"
            )
    if differences:
        raise TextStartError(
            f"{source.describe()} was trained with other dictionaries than this run's data: "
            + "; ".join(differences)
            + ". Binarize the data with the text model's dictionaries (fairseq-preprocess "
            "--srcdict and --tgtdict: the dict.LANG.txt files it was trained with)"
        )


def check_shapes(model, source: SourceCheckpoint) -> None:
    """Every parameter of the model but those a text model lacks must be in the checkpoint,
    with its shape, and nothing else."""
    completed = set(model.text_model_keys())
    own = {k: tuple(v.shape) for k, v in model.state_dict().items() if k not in completed}
    theirs = {k: v for k, v in source.shapes.items() if k not in completed}
    problems = [f"{k} is missing there" for k in sorted(set(own) - set(theirs))]
    problems += [f"{k} is not in this model" for k in sorted(set(theirs) - set(own))]
    problems += [
        f"{k} is {theirs[k]} there, {shape} here"
        for k, shape in own.items()
        if k in theirs and theirs[k] != shape
    ]
    if problems:
        shown = "; ".join(problems[:5]) + (
            f"; and {len(problems) - 5} more" if problems[5:] else ""
        )
        raise TextStartError(
            f"{source.describe()} does not fit this run's model: {shown}. Give this run the "
            "text model's architecture flags"
        )


def check_same_features(model, source: SourceCheckpoint) -> None:
    """A model of the same kind keeps its fusion, which reads features of its size D."""
    trained_on = source.task_state.get("visual_feature_dim")
    if model.uses_image and trained_on is not None and trained_on != model.visual_feature_dim:
        raise TextStartError(
            f"{source.describe()} was trained on {trained_on}-dimensional image features, and "
            f"this run's --visual-features are {model.visual_feature_dim}-dimensional: give the "
            "features it was trained on (or their extractor's), or start from its text-only model"
        )


def start_from(model, task, path: str, model_cfg) -> bool:
    """Check the checkpoint ``path`` that ``model`` is about to load and, if it is a text
    model, prepare ``model`` to start from it (fusion at its identity, the state that the text
    model lacks taken from ``model``). Returns whether it is a text model; False: a model of
    the same kind, which fairseq loads as it is."""
    source = read_source(path)
    if start_kind(model, source) is None:
        check_same_features(model, source)
        return False
    check_monolingual(source)
    identity = FUSION_REGISTRY[model.fusion_name].identity
    if identity is None:
        others = [
            n for n, s in FUSION_REGISTRY.items() if s.identity and model.fusion_site in s.sites
        ]
        raise TextStartError(
            f"--visual-fusion {model.fusion_name} declares no identity (its registry entry), so "
            f"{model.arch_name} cannot start from the text model {source.describe()} without "
            f"changing its function: train from scratch (drop --finetune-from-model), or use a "
            f"fusion with an identity ({', '.join(others)})"
        )
    check_languages(task, source)
    check_options(model, model_cfg, source)
    check_dictionaries(task, source)
    check_shapes(model, source)
    model.start_from_text_model(path)
    logger.info(
        f"starting from the text model {source.describe()}: --visual-fusion "
        f"{model.fusion_name} at its identity ({identity})"
    )
    return True


def check_frozen(model, loaded: tuple[str, bool] | None) -> None:
    """``--freeze-text-model`` needs weights to keep, and a fusion to train."""
    if loaded is None:
        raise TextStartError(
            "--freeze-text-model keeps the text model's weights as they are loaded, and this "
            "run loads none: start from a text model with --finetune-from-model TEXT.pt, or "
            "drop --freeze-text-model"
        )
    if not any(parameter.requires_grad for parameter in model.parameters()):
        raise TextStartError(
            f"--freeze-text-model trains the fusion only, and --visual-fusion "
            f"{model.fusion_name} has no parameters: choose a fusion that uses the image, or "
            "drop --freeze-text-model"
        )


def config_options(config, of: type | None = None, prefix: str = "") -> dict[str, Any]:
    """A (nested) dataclass config's options under their flat flag names (``encoder_embed_dim``);
    ``of``: the dataclass whose fields to take (a base class of the config's)."""
    result = {}
    for item in fields(of or config):
        value = getattr(config, item.name)
        if is_dataclass(value):
            result.update(config_options(value, None, f"{prefix}{item.name}_"))
        else:
            result[prefix + item.name] = value
    return result


def as_attributes(cfg: Any) -> Any:
    """A stored configuration with attribute access (dicts become omegaconf configs)."""
    return OmegaConf.create(cfg) if isinstance(cfg, dict) else cfg
