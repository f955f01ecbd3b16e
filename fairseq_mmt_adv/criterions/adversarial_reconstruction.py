"""Criterion ``adversarial_reconstruction``: translation loss plus visual reconstruction terms.

Total loss (paper eq. 3): ``L = L_Q + auxiliary terms computed from hT``, the decoder's final
hidden state, with three settings (``--reconstruction``):

* ``mse`` ("Baseline + G", section 3.1): ``lambda_r ||v - G(hT)||^2`` (eq. 6).
* ``q-waae`` (section 4.2, Algorithm 2): the ``mse`` term plus ``lambda_a`` times an adversarial
  term from a latent critic D that tells hT from prior samples h' ~ N(0, I).
* ``g-wgan`` (section 4.1, Algorithm 1): a conditional generator ``v' = G([z, hT])`` against a
  critic D on ``[v, hT]``; the generator/model loss is ``-lambda_a D(v', hT)``.

G is a submodule, so fairseq's optimizer trains it jointly with the model. D is trained only
here, by its own Adam (WGAN-GP, eq. 5), inside each training forward pass; it lives outside the
module tree (see :class:`CriticTrainer`). See ``docs/CRITERION.md``.
"""

import ast
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.nn.functional as F
from fairseq.criterions import register_criterion
from fairseq.criterions.label_smoothed_cross_entropy import (
    LabelSmoothedCrossEntropyCriterion,
    LabelSmoothedCrossEntropyCriterionConfig,
)
from fairseq.dataclass import ChoiceEnum
from fairseq.logging import metrics
from torch import Tensor, nn

from fairseq_mmt_adv.checkpoints.loading import read_entry
from fairseq_mmt_adv.data.feature_files import NEEDS_FEATURES, VisualFeatureError
from fairseq_mmt_adv.models.contract import ReconstructionSource
from fairseq_mmt_adv.modules import (
    ConditionalFeatureCritic,
    ConditionalVisualFeatureGenerator,
    LatentCritic,
    VisualFeatureGenerator,
)
from fairseq_mmt_adv.modules.critic_trainer import CriticTrainer

logger = logging.getLogger(__name__)

RECONSTRUCTION_CHOICES = ChoiceEnum(["mse", "q-waae", "g-wgan"])
ADVERSARIAL_LOSS_CHOICES = ChoiceEnum(["wasserstein", "log"])
RECONSTRUCTION_DISTANCE_CHOICES = ChoiceEnum(["mse", "sse"])
DEFAULT_LAMBDA_R = {"mse": 0.2, "q-waae": 0.2, "g-wgan": 0.0}
DEFAULT_CRITIC_HIDDEN = {"q-waae": "", "g-wgan": "1024,512"}
# logged as sums over sentences, divided by nsentences in reduce_metrics
AUXILIARY_METRICS = ("recon_mse", "critic_loss", "wasserstein", "grad_penalty", "adv_loss")


@dataclass
class AdversarialReconstructionCriterionConfig(LabelSmoothedCrossEntropyCriterionConfig):
    """``label_smoothed_cross_entropy``'s options plus those of G and D (paper section 5.1)."""

    reconstruction: RECONSTRUCTION_CHOICES = field(  # type: ignore[valid-type]
        default="q-waae",
        metadata={
            "help": "auxiliary objective: mse (Baseline + G), q-waae (Algorithm 2) or g-wgan "
            "(Algorithm 1)"
        },
    )
    # fairseq's argparse/omegaconf conversion understands typing.Optional, not `X | None`
    lambda_r: Optional[float] = field(
        default=None,
        metadata={"help": "weight of the reconstruction term (eq. 3); default 0.2, 0 for g-wgan"},
    )
    reconstruction_distance: RECONSTRUCTION_DISTANCE_CHOICES = field(  # type: ignore[valid-type]
        default="mse",
        metadata={
            "help": "c(v, v'): mean (mse, section 3.3) or sum (sse, eq. 6) of (v - v')^2 over "
            "D; see docs/CRITERION.md"
        },
    )
    lambda_a: float = field(default=0.2, metadata={"help": "weight of the adversarial term"})
    lambda_gp: float = field(default=10.0, metadata={"help": "gradient penalty weight (eq. 5)"})
    adversarial_loss: ADVERSARIAL_LOSS_CHOICES = field(  # type: ignore[valid-type]
        default="wasserstein",
        metadata={"help": "adversarial term A(d) of the model's loss: -d, or -log sigmoid(d)"},
    )
    critic_hidden: Optional[str] = field(
        default=None,
        metadata={
            "help": "ReLU layer sizes of the critic D, comma-separated ('' is linear); "
            "default '' for q-waae, '1024,512' for g-wgan"
        },
    )
    critic_lr: float = field(default=2e-4, metadata={"help": "learning rate of D's Adam"})
    critic_betas: str = field(default="(0.5, 0.9)", metadata={"help": "betas of D's Adam"})
    critic_iters: int = field(
        default=5,
        metadata={
            "help": "critic updates per training forward, i.e. per micro-batch (lambda_critic)"
        },
    )
    noise_dim: int = field(default=128, metadata={"help": "g-wgan: size of the noise z"})
    generator_dropout: float = field(
        default=0.5, metadata={"help": "g-wgan: dropout on the generator input [z, hT]"}
    )


def parse_critic_betas(text: str) -> tuple[float, float]:
    """Parse ``"(0.5, 0.9)"`` like fairseq's ``--adam-betas`` (but without ``eval``)."""
    message = f"--critic-betas must be two numbers in [0, 1) like '(0.5, 0.9)', not {text!r}"
    try:
        betas = ast.literal_eval(text)
    except (ValueError, SyntaxError) as error:
        raise ValueError(message) from error
    if not (isinstance(betas, Sequence) and len(betas) == 2):
        raise ValueError(message)
    if not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
        raise ValueError(message)
    return float(betas[0]), float(betas[1])


def parse_hidden_sizes(text: str) -> tuple[int, ...]:
    """Parse ``"1024,512"`` into ``(1024, 512)``; an empty string means no hidden layer."""
    sizes = [size.strip() for size in text.split(",") if size.strip()]
    if not all(size.isdigit() and int(size) > 0 for size in sizes):
        raise ValueError(
            "--critic-hidden must be comma-separated positive layer sizes like '1024,512' "
            f"('' for a linear critic), not {text!r}"
        )
    return tuple(int(size) for size in sizes)


def check_options(cfg: AdversarialReconstructionCriterionConfig) -> None:
    """Refuse options that have no meaning, naming the flag: a negative weight would reward a
    worse reconstruction or a worse adversarial score."""
    bounds = [
        ("--lambda-r", cfg.lambda_r, "a weight >= 0", lambda x: x is None or x >= 0),
        ("--lambda-a", cfg.lambda_a, "a weight >= 0", lambda x: x >= 0),
        ("--lambda-gp", cfg.lambda_gp, "a weight >= 0", lambda x: x >= 0),
        ("--critic-lr", cfg.critic_lr, "a learning rate > 0", lambda x: x > 0),
        ("--critic-iters", cfg.critic_iters, "an integer >= 1", lambda x: x >= 1),
        ("--noise-dim", cfg.noise_dim, "an integer >= 1", lambda x: x >= 1),
        ("--generator-dropout", cfg.generator_dropout, "in [0, 1)", lambda x: 0 <= x < 1),
    ]
    for flag, value, wanted, valid in bounds:
        if not (value is None or math.isfinite(value)) or not valid(value):
            raise ValueError(f"{flag} must be {wanted}, not {value}")
    parse_critic_betas(cfg.critic_betas)
    if cfg.critic_hidden is not None:
        parse_hidden_sizes(cfg.critic_hidden)


class CriterionStateMismatch(ValueError):
    """A checkpoint's criterion state that this criterion cannot take.

    fairseq's trainer loads the criterion state inside ``except Exception`` and replaces what it
    catches by its generic "please ensure that the architectures match", so the criterion reads
    the state of the checkpoint that the task resumes from when it is built, and refuses it
    there (:meth:`AdversarialReconstructionCriterion.refuse_resumed_state`).
    """


def reconstructed_model(model: Any) -> ReconstructionSource:
    """``model``, checked to keep the plugin's model contract: the criterion reads hT's size H
    (``final_hidden_size``) and the feature size D from it, and normalizes the target v as its
    encoder does."""
    if not isinstance(model, ReconstructionSource):
        raise ValueError(
            f"adversarial_reconstruction trains models that return extra['final_hidden'] and "
            f"say its size (final_hidden_size), as the plugin's do; {type(model).__name__} does "
            "not: use a model of the plugin (--arch cgru_mmt..., transformer_mmt...)"
        )
    return model


def check_task(task: Any) -> None:
    """The task must be one whose samples carry image features."""
    if hasattr(task, "visual_feature_dim") and task.visual_feature_dim is None:
        raise VisualFeatureError(
            f"--criterion adversarial_reconstruction reconstructs the image: {NEEDS_FEATURES}"
        )
    if not isinstance(getattr(task, "visual_feature_dim", None), int):
        raise ValueError(
            "adversarial_reconstruction reconstructs image features: use it with --task "
            "multimodal_translation --visual-features DIR"
        )


def trained_model_of(task: Any) -> Any:
    """The model the task built last: the one fairseq-train then builds the criterion for."""
    model = getattr(task, "trained_model", None)
    if model is None:
        raise ValueError(
            "adversarial_reconstruction sizes G and D by the model it trains, and none is "
            "built yet: build the model first (task.build_model, as fairseq-train does) or "
            "pass model="
        )
    return model


@register_criterion(
    "adversarial_reconstruction", dataclass=AdversarialReconstructionCriterionConfig
)
class AdversarialReconstructionCriterion(LabelSmoothedCrossEntropyCriterion):
    """Label-smoothed NLL plus the visual reconstruction terms of eq. (3) / Algorithms 1-2."""

    def __init__(
        self, cfg: AdversarialReconstructionCriterionConfig, task: Any, model: Any = None
    ) -> None:
        """G and D are sized by the model this criterion trains: ``model``, or else the one
        the task built last (``task.trained_model``: fairseq builds the model, then the
        criterion)."""
        super().__init__(
            task,
            cfg.sentence_avg,
            cfg.label_smoothing,
            ignore_prefix_size=cfg.ignore_prefix_size,
            report_accuracy=cfg.report_accuracy,
        )
        check_options(cfg)
        mode = str(cfg.reconstruction)
        check_task(task)
        trained = reconstructed_model(model if model is not None else trained_model_of(task))
        feature_dim, hidden_dim = trained.visual_feature_dim, int(trained.final_hidden_size)
        self.reconstruction = mode
        self.feature_dim = feature_dim
        self.lambda_r = DEFAULT_LAMBDA_R[mode] if cfg.lambda_r is None else cfg.lambda_r
        self.lambda_a = cfg.lambda_a
        self.reconstruction_distance = str(cfg.reconstruction_distance)
        self.adversarial_loss = str(cfg.adversarial_loss)
        self.critic_iters = cfg.critic_iters
        self.generator: nn.Module
        if mode == "g-wgan":
            self.generator = ConditionalVisualFeatureGenerator(
                hidden_dim, feature_dim, cfg.noise_dim, cfg.generator_dropout
            )
        else:
            self.generator = VisualFeatureGenerator(hidden_dim, feature_dim)
        self.critic: CriticTrainer | None = None
        if mode != "mse":
            hidden_sizes = parse_hidden_sizes(
                DEFAULT_CRITIC_HIDDEN[mode] if cfg.critic_hidden is None else cfg.critic_hidden
            )
            critic = (
                LatentCritic(hidden_dim, hidden_sizes)
                if mode == "q-waae"
                else ConditionalFeatureCritic(feature_dim, hidden_dim, hidden_sizes)
            )
            self.critic = CriticTrainer(
                critic,
                lr=cfg.critic_lr,
                betas=parse_critic_betas(cfg.critic_betas),
                lambda_gp=cfg.lambda_gp,
                eps_on_fake=mode == "q-waae",
            )
        self.refuse_resumed_state(task)
        # a run that starts from another model's weights (--finetune-from-model) loads that
        # model's criterion state if it fits, else G and D start as built here
        initial_checkpoint = getattr(task, "initial_checkpoint", None)
        self.initial_checkpoint = initial_checkpoint() if initial_checkpoint else None

    def forward(
        self, model: nn.Module, sample: dict[str, Any], reduce: bool = True
    ) -> tuple[Tensor, int, dict[str, Any]]:
        """Compute the loss for the given sample.

        Returns (loss, sample_size, logging_output) as fairseq's criteria do. In training mode
        (``model.training``) D first takes ``critic_iters`` updates on this batch.
        """
        if not reduce:
            raise ValueError("adversarial_reconstruction supports reduce=True only")
        net_output = model(**sample["net_input"])
        loss, nll_loss = self.compute_loss(model, net_output, sample, reduce=reduce)
        nsentences = sample["target"].size(0)
        sample_size = nsentences if self.sentence_avg else sample["ntokens"]
        auxiliary_loss, auxiliary_logs = self.compute_auxiliary_loss(
            net_output[1]["final_hidden"], self.target_features(model, sample), model.training
        )
        # fairseq divides by sample_size: each term then weighs lambda x its sentence mean
        loss = loss + sample_size * auxiliary_loss
        logging_output = {
            "loss": loss.data,
            "nll_loss": nll_loss.data,
            "ntokens": sample["ntokens"],
            "nsentences": nsentences,
            "sample_size": sample_size,
            **auxiliary_logs,
        }
        if self.report_accuracy:
            n_correct, total = self.compute_accuracy(model, net_output, sample)
            logging_output["n_correct"] = n_correct.data
            logging_output["total"] = total.data
        return loss, sample_size, logging_output

    def target_features(self, model: Any, sample: dict[str, Any]) -> Tensor:
        """The target v (B x D, float32): the sample's raw features normalized as ``model``
        normalizes them; pooled features, or the mean over K regions."""
        features = sample["net_input"].get("visual_features")
        if features is None:
            raise ValueError(
                "adversarial_reconstruction reconstructs image features, and the batch has "
                "none: use --task multimodal_translation --visual-features DIR"
            )
        features = model.normalize_visual_features(features)
        if features.dim() == 3:
            features = features.mean(dim=1)
        if features.dim() != 2 or features.size(-1) != self.feature_dim:
            raise ValueError(
                f"visual_features must be B x {self.feature_dim} or B x K x {self.feature_dim}, "
                f"got {tuple(sample['net_input']['visual_features'].shape)}"
            )
        return features.float()

    def compute_auxiliary_loss(
        self, hidden: Tensor, features: Tensor, train_critic: bool
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Weighted sentence means of the auxiliary terms, and their sums for logging.

        ``hidden`` is hT (B x H), ``features`` the target v (B x D). With ``train_critic`` D is
        updated first (Algorithms 1-2); otherwise only the Wasserstein estimate is logged.
        """
        nsentences = hidden.size(0)
        logs: dict[str, Tensor] = {}
        if self.critic is not None:
            self.critic.follow(hidden)
        if self.critic is not None and train_critic:
            logs.update(self._train_critic(hidden.detach(), features))
        reconstruction = self.generator(hidden)
        squared_error = (features - reconstruction.float()).pow(2)  # eq. (6)
        if self.reconstruction_distance == "mse":
            recon = squared_error.mean(dim=-1)
        else:
            recon = squared_error.sum(dim=-1)
        auxiliary_loss = self.lambda_r * recon.mean()
        logs["recon_mse"] = recon.detach().sum()
        if self.critic is not None:
            g_wgan = self.reconstruction == "g-wgan"
            fake, condition = (reconstruction, hidden) if g_wgan else (hidden, None)
            scores = self.critic.score_frozen(fake, condition)
            adversarial = (
                -scores if self.adversarial_loss == "wasserstein" else -F.logsigmoid(scores)
            )
            auxiliary_loss = auxiliary_loss + self.lambda_a * adversarial.mean()
            logs["adv_loss"] = adversarial.detach().sum()
            if not train_critic:
                real = features if g_wgan else torch.randn_like(hidden, dtype=torch.float)
                logs["wasserstein"] = nsentences * self.critic.estimate(real, fake, condition)
        return auxiliary_loss, logs

    def _train_critic(self, hidden: Tensor, features: Tensor) -> dict[str, Tensor]:
        """``critic_iters`` updates of D, each with fresh z (g-wgan) or h' (q-waae) and eps.

        Returns the sentence-weighted means over the updates of the critic loss, Wasserstein
        estimate and gradient penalty.
        """
        assert self.critic is not None
        totals = torch.zeros(3, device=hidden.device)
        for _ in range(self.critic_iters):
            if self.reconstruction == "g-wgan":
                with torch.no_grad():
                    fake = self.generator(hidden)
                stats = self.critic.step(features, fake, condition=hidden)
            else:
                prior = torch.randn_like(hidden, dtype=torch.float)
                stats = self.critic.step(prior, hidden)
            totals += torch.stack(stats)
        critic_loss, wasserstein, penalty = totals * (hidden.size(0) / self.critic_iters)
        return {"critic_loss": critic_loss, "wasserstein": wasserstein, "grad_penalty": penalty}

    def get_extra_state(self) -> dict[str, Any]:
        """D's parameters and Adam state; ``state_dict()`` stores them under ``_extra_state``."""
        return {} if self.critic is None else self.critic.state_dict()

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restore D and its Adam state from ``load_state_dict``."""
        if self.critic is not None:
            self.critic.load_state_dict(state)

    def refuse_resumed_state(self, task: Any) -> None:
        """Refuse, now, the criterion state of the checkpoint that ``task`` resumes from if it
        does not fit (fairseq would load it later, where it hides the reason)."""
        resume_checkpoint = getattr(task, "resume_checkpoint", None)
        path = resume_checkpoint() if resume_checkpoint is not None else None
        if path is not None:
            self.check_state(read_entry(path, "criterion"), path)

    def check_state(self, state_dict: dict[str, Any] | None, source: str = "the checkpoint"):
        """Raise :class:`CriterionStateMismatch` if ``state_dict`` does not fit."""
        problem = self.state_mismatch(state_dict)
        if problem is not None:
            raise CriterionStateMismatch(
                f"{source}: its criterion state does not fit --reconstruction "
                f"{self.reconstruction}: {problem}. Resume with the --reconstruction, "
                "--noise-dim and --critic-hidden it was trained with, or start a new --save-dir"
            )

    def state_mismatch(self, state_dict: dict[str, Any] | None) -> str | None:
        """What keeps ``state_dict`` (a checkpoint's criterion state) from fitting, if anything."""
        if state_dict is None:
            return "it holds none (a criterion without parameters, such as the NLL's)"
        extra = state_dict.get("_extra_state") or {}
        if self.critic is None and extra:
            return "it holds a critic D (q-waae or g-wgan), and mse has none"
        if self.critic is not None and not extra:
            return "it holds no critic D (mse, or the NLL criterion)"
        own = {k: v for k, v in self.state_dict().items() if k != "_extra_state"}
        given = {k: v for k, v in state_dict.items() if k != "_extra_state"}
        if self.critic is not None:
            own.update({f"D.{k}": v for k, v in self.critic.critic.state_dict().items()})
            given.update({f"D.{k}": v for k, v in extra["critic"].items()})
        if own.keys() != given.keys():
            return f"its parameters are {sorted(given)}, this criterion's {sorted(own)}"
        for name, tensor in own.items():
            if tuple(given[name].shape) != tuple(tensor.shape):
                return (
                    f"{name} is {tuple(given[name].shape)} there, {tuple(tensor.shape)} here "
                    "(other G or D sizes: --noise-dim, --critic-hidden, or another model)"
                )
        return None

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        problem = self.state_mismatch(state_dict)
        if problem is not None and self.initial_checkpoint is not None:
            logger.info(
                f"{self.initial_checkpoint}: its criterion state does not fit ({problem}); "
                f"G{' and D' if self.critic is not None else ''} start as initialized"
            )
            return None
        self.check_state(state_dict)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    @classmethod
    def reduce_metrics(cls, logging_outputs: list[dict[str, Any]]) -> None:
        """Aggregate logging outputs from data parallel training."""
        super().reduce_metrics(logging_outputs)
        nsentences = sum(log.get("nsentences", 0) for log in logging_outputs)
        if nsentences == 0:
            return
        for key in AUXILIARY_METRICS:
            if any(key in log for log in logging_outputs):
                total = sum(log.get(key, 0) for log in logging_outputs)
                metrics.log_scalar(key, total / nsentences, nsentences, round=3)
