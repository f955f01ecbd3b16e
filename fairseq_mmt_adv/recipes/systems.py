"""The systems that the recipes, the demo and the benchmarks train, defined once.

A *system* is a visual fusion of a model family plus an optional reconstruction mode:

* the family: ``cgru`` (``--arch cgru_mmt*``) or ``transformer`` (``--arch transformer_mmt*``);
  its fusions are those of the fusion registry (:mod:`fairseq_mmt_adv.fusions`) that act where
  its models fuse (their ``fusion_site``): ``ctx-mul`` and ``none`` for the cGRU, ``gated``,
  ``selective-attn`` and ``none`` for the Transformer, and any fusion registered since;
* no reconstruction: ``--criterion label_smoothed_cross_entropy --label-smoothing 0`` (NLL);
* a reconstruction mode: ``--criterion adversarial_reconstruction --reconstruction MODE`` with
  MODE ``mse`` ("Baseline + G"), ``q-waae`` (Algorithm 2) or ``g-wgan`` (Algorithm 1), their
  weights (``--lambda-r``, ``--lambda-a``, ``--noise-dim``) and, for the two adversarial modes,
  the critic's settings of the paper (section 5.1).

Named systems (:func:`all_systems`; ``python -m fairseq_mmt_adv.recipes.systems --list``): each
fusion of each family alone and with each mode, named after the fusion (``F``, ``F+MODE``), but

* ``none``: ``text-only`` (cGRU) and ``transformer-text-only``, with a mode ``mse-nov``,
  ``q-waae-nov``, ``g-wgan-nov`` (cGRU, Table 4's "no v") and ``transformer-text-only+MODE``;
* the cGRU's ``ctx-mul`` (the paper's baseline) with a mode: ``mse``, ``q-waae``, ``g-wgan``;
* a fusion of both families (other than ``none``): ``cgru-F`` and ``transformer-F``.

Then the systems fine-tuned from the family's text-only model (``System.start_from``): for each
fusion F of the family but ``none`` that declares an identity initialization (the registry's
``identity``: ``gated``, ``selective-attn``; not ``ctx-mul``), ``finetuned-`` before the name of
each of F's systems (``finetuned-gated``, ``finetuned-gated+q-waae``...), with F's flags: the
caller starts its training from the trained checkpoint of ``start_from``
(``transformer-text-only``; fairseq-train ``--finetune-from-model``), and ``freeze_text_model``
adds ``--freeze-text-model`` (only the fusion and G train) and ``_frozen`` to the run name.

The paper's names are aliases (``ALIASES``): ``baseline`` = ``ctx-mul``, ``baseline-nov`` =
``text-only``. Each family's baseline, the system the others are compared with, is
``BASELINES[family]``. The model's sizes (``--arch``) and the optimization are the caller's,
label smoothing included: ``flags(name, label_smoothing=X)`` gives both criteria
``--label-smoothing X`` (default: none for NLL, which is smoothing 0, the paper's L_Q).

The weights' defaults and the critic's settings are the criterion's defaults
(``fairseq_mmt_adv/criterions/adversarial_reconstruction.py``), written out in every command.

Command line (``python -m fairseq_mmt_adv.recipes.systems --help``): a system's flags, one per
line; with ``--tsv`` its settings as ``KEY<TAB>VALUE`` lines (SYSTEM, FAMILY, ARCH_PREFIX,
BASELINE, START_FROM (empty for a system trained from scratch), RUN_NAME, then one ``FLAG`` line
per flag), which examples/multi30k/train.sh reads;
with ``--requests FILE`` those lines of many requests in one call (each Python process imports
fairseq: seconds), each line prefixed by its request.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass

from fairseq.models import ARCH_MODEL_REGISTRY

from fairseq_mmt_adv.criterions.adversarial_reconstruction import (
    DEFAULT_LAMBDA_R as CRITERION_LAMBDA_R,
)
from fairseq_mmt_adv.criterions.adversarial_reconstruction import (
    AdversarialReconstructionCriterionConfig,
)
from fairseq_mmt_adv.fusions.registry import FUSION_REGISTRY, fusion_names
from fairseq_mmt_adv.recipes.command_line import report_errors

RECONSTRUCTIONS = ("mse", "q-waae", "g-wgan")
ADVERSARIAL = ("q-waae", "g-wgan")
# the families: the architecture whose model class says where it fuses (fusion_site)
ARCH_PREFIXES = {"cgru": "cgru_mmt", "transformer": "transformer_mmt"}
BASELINES = {"cgru": "ctx-mul", "transformer": "transformer-text-only"}
ALIASES = {"baseline": "ctx-mul", "baseline-nov": "text-only"}
# the paper's names of a family's systems with a fusion: alone, and the pattern with a mode
PAPER_NAMES = {
    ("cgru", "none"): ("text-only", "{mode}-nov"),
    ("cgru", "ctx-mul"): ("ctx-mul", "{mode}"),
}


def flag_text(value: float | int | str) -> str:
    """A criterion default as command-line text: 0.2, 0 (not 0.0), 10, 0.0002, (0.5, 0.9)."""
    return value if isinstance(value, str) else f"{value:g}"


_CRITERION = AdversarialReconstructionCriterionConfig()
# The paper's weights (section 5.1; Algorithm 1 has no reconstruction term): the criterion's
# defaults, as command-line text.
DEFAULT_LAMBDA_R = {mode: flag_text(weight) for mode, weight in CRITERION_LAMBDA_R.items()}
DEFAULT_LAMBDA_A = flag_text(_CRITERION.lambda_a)
DEFAULT_NOISE_DIM = flag_text(_CRITERION.noise_dim)
# The weights each mode takes, in the order of their flags (and of the run name's parts).
WEIGHTS = {
    None: (),
    "mse": ("lambda_r",),
    "q-waae": ("lambda_r", "lambda_a"),
    "g-wgan": ("noise_dim", "lambda_r", "lambda_a"),
}
FLAG_OF = {"noise_dim": "--noise-dim", "lambda_r": "--lambda-r", "lambda_a": "--lambda-a"}
RUN_NAME_PART = {"noise_dim": "z", "lambda_r": "lr", "lambda_a": "la"}
# Why a mode refuses a weight it does not take.
NO_SUCH_WEIGHT = {
    None: "has no lambda_r, lambda_a or noise",
    "mse": "has no adversarial term (lambda_a, noise)",
    "q-waae": "has no noise (--noise-dim is for g-wgan)",
}
# The critic D of the adversarial modes (section 5.1: gradient penalty 10, Adam 2e-4 (0.5, 0.9),
# 5 critic updates per training step): the criterion's defaults, as flags.
PAPER_CRITIC = tuple(
    word
    for field in ("lambda_gp", "critic_lr", "critic_betas", "critic_iters")
    for word in ("--" + field.replace("_", "-"), flag_text(getattr(_CRITERION, field)))
)
NLL_CRITERION = ("--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0")
NUMBER = re.compile(r"[0-9]+([.][0-9]+)?")
POSITIVE_INTEGER = re.compile(r"[1-9][0-9]*")
FINETUNED = "finetuned-"  # the names of the systems fine-tuned from a text model start with it
FREEZE_FLAG = "--freeze-text-model"


class SystemSpecError(ValueError):
    """An unknown system or a setting it does not take; the message names the flag."""


@dataclass(frozen=True)
class System:
    """One named system: family, visual fusion and reconstruction mode (None: NLL only), and
    the system whose trained checkpoint it is fine-tuned from (None: trained from scratch)."""

    name: str
    family: str
    fusion: str
    reconstruction: str | None
    start_from: str | None = None

    def __post_init__(self) -> None:
        if self.family not in ARCH_PREFIXES:
            raise SystemSpecError(f"unknown family {self.family!r}: one of {list(ARCH_PREFIXES)}")
        if self.fusion not in fusions(self.family):
            raise SystemSpecError(f"{self.family} has no visual fusion {self.fusion!r}")
        if self.reconstruction not in WEIGHTS:
            raise SystemSpecError(f"unknown reconstruction {self.reconstruction!r}")

    @property
    def adversarial(self) -> bool:
        return self.reconstruction in ADVERSARIAL


def fusion_site(family: str) -> str:
    """Where the family's models fuse the image (their model class's ``fusion_site``)."""
    return ARCH_MODEL_REGISTRY[ARCH_PREFIXES[family]].fusion_site


def fusions(family: str) -> list[str]:
    """The registered fusions that act where the family's models fuse, ``none`` first."""
    return sorted(fusion_names(fusion_site(family)), key=lambda name: name != "none")


def system_names(family: str, fusion: str) -> dict[str | None, str]:
    """The names of the family's systems with ``fusion``: mode (None: NLL only) -> name."""
    if (family, fusion) in PAPER_NAMES:
        alone, pattern = PAPER_NAMES[family, fusion]
    else:
        alone = "text-only" if fusion == "none" else fusion
        sites = FUSION_REGISTRY[fusion].sites
        shared = [other for other in ARCH_PREFIXES if fusion_site(other) in sites]
        alone = f"{family}-{alone}" if len(shared) > 1 else alone
        pattern = alone + "+{mode}"
    return {None: alone, **{mode: pattern.format(mode=mode) for mode in RECONSTRUCTIONS}}


def text_only(family: str) -> str:
    """The name of the family's text-only system (fusion ``none``, NLL only)."""
    return system_names(family, "none")[None]


def finetunable(family: str) -> list[str]:
    """The family's fusions that a text model can be fine-tuned into: all but ``none`` that
    declare an identity initialization (the fused model starts as the text model)."""
    return [
        fusion
        for fusion in fusions(family)
        if fusion != "none" and FUSION_REGISTRY[fusion].identity is not None
    ]


def family_systems(family: str) -> list[System]:
    """The family's systems: each fusion alone, then with each mode; then the same of each
    :func:`finetunable` fusion, ``finetuned-`` and fine-tuned from :func:`text_only`."""
    result = [
        System(name, family, fusion, mode)
        for fusion in fusions(family)
        for mode, name in system_names(family, fusion).items()
    ]
    start = text_only(family)
    return result + [
        System(FINETUNED + name, family, fusion, mode, start)
        for fusion in finetunable(family)
        for mode, name in system_names(family, fusion).items()
    ]


def all_systems() -> dict[str, System]:
    """Every named system, read from the fusion registry when asked: for each family, each of
    its fusions alone, then with each mode, then the systems fine-tuned from its text model."""
    result: dict[str, System] = {}
    for family in ARCH_PREFIXES:
        for system in family_systems(family):
            if system.name in result or system.name in ALIASES:
                raise SystemSpecError(
                    f"visual fusion {system.fusion!r} gives {family} a system {system.name!r} "
                    "that exists already: register the fusion under another name"
                )
            result[system.name] = system
    return result


def get(name: str) -> System:
    """The system of a name or of a paper alias (``baseline``)."""
    systems = all_systems()
    system = systems.get(ALIASES.get(name, name))
    if system is None:
        names = ", ".join([*ALIASES, *systems])
        raise SystemSpecError(f"--system must be one of {names}; not {name!r}")
    return system


def names(family: str) -> list[str]:
    """The systems of a family (``cgru`` or ``transformer``), in :func:`all_systems`' order."""
    return [name for name, system in all_systems().items() if system.family == family]


def alone(family: str) -> list[str]:
    """The family's systems without a reconstruction mode trained from scratch: each of its
    fusions alone."""
    systems = all_systems()
    return [
        name
        for name in names(family)
        if systems[name].reconstruction is None and systems[name].start_from is None
    ]


def check_freeze(name: str, freeze_text_model: bool) -> None:
    """Raise SystemSpecError for ``--freeze-text-model`` on a system trained from scratch."""
    if not freeze_text_model or get(name).start_from is not None:
        return
    takers = [other for other, system in all_systems().items() if system.start_from]
    like = FINETUNED + get(name).name
    example = like if like in takers else (takers or [FINETUNED + "*"])[0]
    raise SystemSpecError(
        f"{FREEZE_FLAG} is for the systems fine-tuned from a text model ({FINETUNED}*, e.g. "
        f"{example}; see --list), not {name}, which trains from scratch: drop {FREEZE_FLAG}"
    )


def settings(name: str, **weights: float | str | None) -> dict[str, str]:
    """The weights of a system's reconstruction mode as flag text, the paper's where not given.

    ``weights``: ``lambda_r``, ``lambda_a``, ``noise_dim``; None or "" means the default.
    Raises SystemSpecError for a weight that the mode does not take or that is no number.
    """
    system = get(name)
    unknown = sorted(set(weights) - set(FLAG_OF))
    if unknown:
        raise SystemSpecError(f"unknown weights {unknown}: the weights are {list(FLAG_OF)}")
    given = {key: str(value) for key, value in weights.items() if value not in (None, "")}
    takes = WEIGHTS[system.reconstruction]
    extra = [key for key in FLAG_OF if key in given and key not in takes]
    if extra:
        drop = ", ".join(FLAG_OF[key] for key in extra)
        raise SystemSpecError(f"{name} {NO_SUCH_WEIGHT[system.reconstruction]}: drop {drop}")
    defaults = {"lambda_a": DEFAULT_LAMBDA_A, "noise_dim": DEFAULT_NOISE_DIM}
    if system.reconstruction is not None:
        defaults["lambda_r"] = DEFAULT_LAMBDA_R[system.reconstruction]
    values = {key: given.get(key, defaults[key]) for key in takes}
    for key, value in values.items():
        if key == "noise_dim" and not POSITIVE_INTEGER.fullmatch(value):
            raise SystemSpecError(f"--noise-dim must be a positive integer, not {value!r}")
        if key != "noise_dim" and not NUMBER.fullmatch(value):
            raise SystemSpecError(f"{FLAG_OF[key]} must be a number >= 0, not {value!r}")
    return values


def flags(
    name: str,
    label_smoothing: float | str | None = None,
    freeze_text_model: bool = False,
    **weights: float | str | None,
) -> list[str]:
    """The fairseq-train flags of a system: its fusion (and ``--freeze-text-model``), then its
    criterion's flags.

    ``weights`` are ``lambda_r``, ``lambda_a`` and ``noise_dim`` (default: the paper's).
    ``label_smoothing`` (e.g. 0.1, Wu et al.'s Transformer recipe) smooths the NLL of either
    criterion; None or "" keeps the paper's NLL (``NLL_CRITERION``'s smoothing 0).
    ``freeze_text_model``: train only the fusion and G of a system with a ``start_from``.
    """
    system = get(name)
    values = settings(name, **weights)
    check_freeze(name, freeze_text_model)
    smoothing = [] if label_smoothing in (None, "") else ["--label-smoothing", str(label_smoothing)]
    if smoothing and not NUMBER.fullmatch(smoothing[1]):
        raise SystemSpecError(f"--label-smoothing must be a number >= 0, not {smoothing[1]!r}")
    result = ["--visual-fusion", system.fusion] + ([FREEZE_FLAG] if freeze_text_model else [])
    if system.reconstruction is None:
        return result + list(NLL_CRITERION[:2]) + (smoothing or list(NLL_CRITERION[2:]))
    result += ["--criterion", "adversarial_reconstruction", "--reconstruction"]
    result.append(system.reconstruction)
    for key, value in values.items():
        result += [FLAG_OF[key], value]
    return result + smoothing + (list(PAPER_CRITIC) if system.adversarial else [])


def run_name(name: str, freeze_text_model: bool = False, **weights: float | str | None) -> str:
    """A run's name: the system's name as given (aliases kept) and its weights, e.g.
    ``q-waae_lr0.2_la0.2`` or ``g-wgan_z128_lr0_la0.2``, then ``_frozen`` for a text model
    fine-tuned frozen (``finetuned-gated+mse_lr0.2_frozen``)."""
    values = settings(name, **weights)
    check_freeze(name, freeze_text_model)
    parts = "".join(f"_{RUN_NAME_PART[key]}{value}" for key, value in values.items())
    return name + parts + ("_frozen" if freeze_text_model else "")


def settings_rows(
    name: str,
    label_smoothing: float | str | None = None,
    freeze_text_model: bool = False,
    **weights: float | str | None,
) -> list[tuple[str, str]]:
    """A system's settings as (KEY, VALUE) rows: SYSTEM (the canonical name), FAMILY,
    ARCH_PREFIX, BASELINE, START_FROM ("" for a system trained from scratch), RUN_NAME, then
    ("FLAG", word) for each of its flags."""
    system = get(name)
    return [
        ("SYSTEM", system.name),
        ("FAMILY", system.family),
        ("ARCH_PREFIX", ARCH_PREFIXES[system.family]),
        ("BASELINE", BASELINES[system.family]),
        ("START_FROM", system.start_from or ""),
        ("RUN_NAME", run_name(name, freeze_text_model, **weights)),
        *(("FLAG", word) for word in flags(name, label_smoothing, freeze_text_model, **weights)),
    ]


def family_value(family: str, values: Iterable[str]) -> str | None:
    """The label smoothing that ``--label-smoothing [FAMILY=]X`` values give ``family``: the
    last ``X`` or ``family=X`` (``FAMILY=`` is none), else None."""
    result = None
    for value in values:
        target, sep, number = value.rpartition("=")
        if sep and target not in ARCH_PREFIXES:
            families = ", ".join(ARCH_PREFIXES)
            raise SystemSpecError(
                f"--label-smoothing {value}: no family {target!r} (the families: {families})"
            )
        if not sep or target == family:
            result = number
    return result


def describe() -> str:
    """One line per system and alias (``--list``); a fine-tuned system's says its start."""
    lines = []
    for system in all_systems().values():
        mode = system.reconstruction or "NLL only"
        start = f", fine-tuned from {system.start_from}" if system.start_from else ""
        lines.append(f"{system.name:32} {system.family:12} {system.fusion:15} {mode}{start}")
    lines += [f"{alias:32} = {target}" for alias, target in ALIASES.items()]
    return "\n".join(lines)


class _RequestParser(argparse.ArgumentParser):
    """Reads one line of ``--requests``: errors raise instead of ending the process."""

    def error(self, message: str):
        raise SystemSpecError(message)


def add_request_arguments(parser: argparse.ArgumentParser) -> None:
    """A request: a system, its weights and label smoothing, and --freeze-text-model."""
    parser.add_argument("system", nargs="?", help="a system or alias (see --list)")
    parser.add_argument("--lambda-r", help="reconstruction weight ('': the default)")
    parser.add_argument("--lambda-a", help="adversarial weight ('': the default)")
    parser.add_argument("--noise-dim", help="g-wgan noise size |z| ('': the default)")
    parser.add_argument(
        "--label-smoothing",
        action="append",
        default=[],
        metavar="[FAMILY=]X",
        help="smooth the NLL by X, of FAMILY's systems only with FAMILY=X (repeatable; '': "
        "none, the paper's)",
    )
    parser.add_argument(
        FREEZE_FLAG,
        action="store_true",
        help="of a system fine-tuned from a text model (finetuned-*): train only the fusion and "
        "G (fairseq-train --freeze-text-model; the run name ends in _frozen)",
    )


def request_rows(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The settings rows of a parsed request."""
    if args.system is None:
        raise SystemSpecError("a request needs a SYSTEM (see --list)")
    smoothing = family_value(get(args.system).family, args.label_smoothing)
    weights = {key: getattr(args, key) for key in FLAG_OF}
    return settings_rows(args.system, smoothing, args.freeze_text_model, **weights)


def table(lines: Iterable[str], source: str) -> list[str]:
    """``REQUEST<TAB>KEY<TAB>VALUE`` lines of each request in ``lines`` (a system and its
    options, as on the command line; REQUEST is the line's words joined by single spaces)."""
    parser = _RequestParser(prog="a request", add_help=False)
    add_request_arguments(parser)
    result = []
    for number, line in enumerate(lines, 1):
        words = line.split()
        if not words:
            continue
        try:
            rows = request_rows(parser.parse_args(words))
        except SystemSpecError as err:
            raise SystemSpecError(f"{source} line {number} ({line.strip()}): {err}") from None
        result += [f"{' '.join(words)}\t{key}\t{value}" for key, value in rows]
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m fairseq_mmt_adv.recipes.systems",
        description="Print the fairseq-train flags of SYSTEM, one per line; with --tsv its "
        "settings as KEY<TAB>VALUE lines (SYSTEM, FAMILY, ARCH_PREFIX, BASELINE, START_FROM, "
        "RUN_NAME, then a FLAG line per flag); with --requests FILE those lines of each request "
        "in FILE, prefixed by the request and a TAB.",
    )
    add_request_arguments(parser)
    parser.add_argument("--tsv", action="store_true", help="KEY<TAB>VALUE lines")
    parser.add_argument(
        "--requests",
        metavar="FILE",
        help="one request a line (SYSTEM and its options, e.g. 'q-waae --lambda-r=0.5'); "
        "'-': standard input",
    )
    parser.add_argument("--list", action="store_true", help="print the systems")
    parser.add_argument("--prog", help="the name errors start with (a calling script's)")
    args = parser.parse_args(argv)
    args.prog = args.prog or parser.prog
    if args.requests is not None and args.system is not None:
        parser.error("give one SYSTEM or --requests FILE, not both")
    if not args.list and args.system is None and args.requests is None:
        parser.error("give one SYSTEM or --requests FILE (see --help or --list)")
    return args


def output(args: argparse.Namespace) -> str:
    """What the command line prints (but --list)."""
    if args.requests == "-":
        return "\n".join(table(sys.stdin, "standard input"))
    if args.requests is not None:
        try:
            with open(args.requests, encoding="utf-8") as requests:
                return "\n".join(table(requests, args.requests))
        except OSError as err:
            raise SystemSpecError(f"--requests {args.requests}: {err.strerror}") from None
    rows = request_rows(args)
    if args.tsv:
        return "\n".join(f"{key}\t{value}" for key, value in rows)
    return "\n".join(value for key, value in rows if key == "FLAG")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        print(describe())
        return 0

    def show() -> None:
        text = output(args)
        if text:
            print(text)

    return report_errors(args.prog, SystemSpecError, show, status=2)


if __name__ == "__main__":
    sys.exit(main())
