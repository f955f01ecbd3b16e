"""The recipes' steps, for the scripts in ``scripts/`` and ``examples/multi30k/``: the scripts
call these functions (or their ``python -m`` commands) rather than hold Python of their own.

* :mod:`~fairseq_mmt_adv.recipes.fairseq_steps`: run a fairseq CLI with its log in a file, the
  demo corpus generated and binarized, the versions and device in one line (``environment``);
* :mod:`~fairseq_mmt_adv.recipes.benchmarks`: the benchmark scripts' systems and flags;
* :mod:`~fairseq_mmt_adv.recipes.features`: check and link a data directory's feature files by
  the task's rules (``link``), random features for a speed check (``random``);
* :mod:`~fairseq_mmt_adv.recipes.moses`: Moses tokenization of the Multi30K raw files;
* :mod:`~fairseq_mmt_adv.recipes.bpe`: subword-nmt's BPE applied to a data directory's files;
* :mod:`~fairseq_mmt_adv.recipes.summary`: one scoring line, the experiments' summary table,
  the best validation BLEU of a training log.

The systems that the recipes train are :mod:`fairseq_mmt_adv.recipes.systems`. Importing any
of these modules imports the package, which registers the plugin with fairseq (seconds, once
per process).
"""
