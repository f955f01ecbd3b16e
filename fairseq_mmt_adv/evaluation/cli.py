"""``fairseq-mmt-evaluate``: measure whether a model uses the image.

    fairseq-mmt-evaluate contrastive DATA --path CKPT ...   # CoMMuTE-style contrastive sets
    fairseq-mmt-evaluate incongruent DATA --path CKPT ...   # the split with other sentences' images
    fairseq-mmt-evaluate masked DATA --path CKPT ...        # masked source words the image restores

Each subcommand loads the model, its text pipeline and the images as ``fairseq-mmt-translate``
does (no ``--user-dir``), takes fairseq's ``--cpu``, ``--batch-size``/``--max-tokens`` and
generation options, prints a short table on stdout (logs go to stderr) and writes its results
with ``--json FILE``. ``fairseq-mmt-evaluate COMMAND --help`` lists a command's options.
"""

import importlib
import sys
from collections.abc import Sequence

from fairseq_mmt_adv.evaluation.common import PROG
from fairseq_mmt_adv.translation.cli import run_console_script
from fairseq_mmt_adv.translation.translator import TranslationInputError

# subcommand -> module of fairseq_mmt_adv.evaluation with its ``main(argv)``
COMMANDS = {
    "contrastive": "contrastive",
    "incongruent": "incongruent",
    "masked": "masked",
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        raise TranslationInputError(
            f"unknown command {command!r}: give one of {', '.join(COMMANDS)} (see {PROG} --help)"
        )
    module = importlib.import_module(f"fairseq_mmt_adv.evaluation.{COMMANDS[command]}")
    return module.main(rest)


def cli_main() -> None:
    run_console_script(PROG, main)


if __name__ == "__main__":
    cli_main()
