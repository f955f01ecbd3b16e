"""The systems of the speed benchmarks (``scripts/benchmark.py``, ``scripts/benchmark_paired.py``).

* ``lstm``: fairseq's own ``lstm`` at the sizes of ``cgru_mmt`` (embeddings 256, hidden 512,
  bidirectional encoder, dropout 0.3), plain ``translation``: the reference the ratios are to;
* ``cgru``: the paper's baseline (``recipes.systems.BASELINES["cgru"]``, ``cgru_mmt``),
  ``cgru-reference`` the same with the step-by-step decoder (``--cgru-implementation
  reference``), ``cgru+MODE`` the system ``MODE`` of ``fairseq_mmt_adv.recipes.systems`` (``mse``,
  ``q-waae``, ``g-wgan``), and the cGRU's other fusions alone (``text-only`` and any registered
  fusion), by their systems' names;
* ``transformer``: fairseq's own ``transformer`` at the sizes of ``transformer_mmt_tiny`` (4 + 4
  layers, embeddings 128, FFN 256, 4 heads, dropout 0.3), plain ``translation``: the reference of
  the Transformer family; every fusion of the family alone (``transformer-text-only``,
  ``gated``, ``selective-attn`` and any registered fusion) and ``gated+q-waae``, the systems of
  those names in ``fairseq_mmt_adv.recipes.systems`` on ``transformer_mmt_tiny``.

The fusions are the fusion registry's when this module is imported (register a new one
before).

The stock systems (:data:`STOCK`) run on ``translation``'s batches of the same data: the
multimodal task's batches are those batches plus the features.

Every system trains with :data:`OPTIMIZATION` (the paper's Adam and clipping).
"""

from pathlib import Path

from fairseq_mmt_adv.recipes import systems
from fairseq_mmt_adv.recipes.fairseq_steps import USER_DIR

# cgru_mmt's sizes (Appendix A) for fairseq's lstm
PAPER_SIZES = (
    *("--encoder-embed-dim", "256", "--encoder-hidden-size", "512"),
    *("--decoder-embed-dim", "256", "--decoder-hidden-size", "512"),
    *("--decoder-out-embed-dim", "256"),
)
LSTM = ("--arch", "lstm", *PAPER_SIZES, "--encoder-bidirectional", "--dropout", "0.3")
CGRU = ("--arch", "cgru_mmt")
# transformer_mmt_tiny's sizes for fairseq's transformer
TINY_TRANSFORMER = (
    *("--arch", "transformer", "--encoder-layers", "4", "--decoder-layers", "4"),
    *("--encoder-embed-dim", "128", "--decoder-embed-dim", "128"),
    *("--encoder-ffn-embed-dim", "256", "--decoder-ffn-embed-dim", "256"),
    *("--encoder-attention-heads", "4", "--decoder-attention-heads", "4", "--dropout", "0.3"),
)
TRANSFORMER_MMT = ("--arch", "transformer_mmt_tiny")
# the Transformer with the paper's main reconstruction mode
TRANSFORMER_MODE_SYSTEM = "gated+q-waae"
# the systems of fairseq itself, on the plain translation task
STOCK = ("lstm", "transformer")
OPTIMIZATION = ("--optimizer", "adam", "--lr", "4e-4", "--clip-norm", "1")


def _benchmark_systems() -> dict[str, list[str]]:
    baseline = systems.BASELINES["cgru"]
    result = {
        "lstm": [*LSTM, *systems.NLL_CRITERION],
        "cgru-reference": [*CGRU, "--cgru-implementation", "reference", *systems.flags(baseline)],
        "cgru": [*CGRU, *systems.flags(baseline)],
    }
    result.update(
        {f"cgru+{mode}": [*CGRU, *systems.flags(mode)] for mode in systems.RECONSTRUCTIONS}
    )
    others = [name for name in systems.alone("cgru") if systems.get(name) != systems.get(baseline)]
    result.update({name: [*CGRU, *systems.flags(name)] for name in others})
    result["transformer"] = [*TINY_TRANSFORMER, *systems.NLL_CRITERION]
    transformers = [*systems.alone("transformer"), TRANSFORMER_MODE_SYSTEM]
    result.update({name: [*TRANSFORMER_MMT, *systems.flags(name)] for name in transformers})
    return result


# name -> model and criterion flags
SYSTEMS = _benchmark_systems()


def task_flags(name: str, data: str | Path, features: str | Path) -> list[str]:
    """The data directory, the plugin and the task of a benchmark system: ``translation`` for
    the stock ones (:data:`STOCK`), ``multimodal_translation`` with ``features`` for the others."""
    if name in STOCK:
        return [str(data), "--user-dir", USER_DIR, "--task", "translation"]
    task = ["--task", "multimodal_translation", "--visual-features", str(features)]
    return [str(data), "--user-dir", USER_DIR, *task]


def train_flags(name: str, data: str | Path, features: str | Path) -> list[str]:
    """A benchmark system's fairseq-train flags: data, task, model, criterion, optimization."""
    if name not in SYSTEMS:
        raise ValueError(f"unknown benchmark system {name!r}: one of {', '.join(SYSTEMS)}")
    return [*task_flags(name, data, features), *SYSTEMS[name], *OPTIMIZATION]
