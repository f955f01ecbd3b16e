"""fairseq-mmt-adv: multimodal translation with adversarial visual reconstruction.

Use as a fairseq user directory: ``fairseq-train --user-dir fairseq_mmt_adv ...``. When fairseq
imports the package (``--user-dir``), or fairseq is loaded already, importing it registers the
``multimodal_translation`` task, the ``cgru_mmt`` and ``transformer_mmt`` architectures and the
``adversarial_reconstruction`` criterion, and lets torch >= 2.6 load fairseq checkpoints. The
tools (``fairseq_mmt_adv.evaluation.scoring``, ``fairseq_mmt_adv.recipes.demo_corpus``, feature extraction) import
without fairseq; when one of them came first, fairseq's ``--user-dir`` still registers the plugin
(:func:`register_with_user_dir`), and ``register()`` registers everything explicitly.
``from fairseq_mmt_adv import MultimodalTranslator`` translates new captions with their images
(``fairseq-mmt-translate`` from the shell); it loads fairseq when first asked for.
"""

import importlib.util
import os
import sys

__version__ = "0.1.0"


def register() -> None:
    """Register the plugin's task, models and criterion with fairseq (what --user-dir does)."""
    from fairseq_mmt_adv import criterions, models, tasks
    from fairseq_mmt_adv.checkpoints import loading  # noqa: F401


class AfterImport:
    """Calls ``then()`` right after ``module`` is first imported, once.

    Installed for fairseq when a tool imported this package before fairseq, to call
    :func:`register_with_user_dir` once fairseq has loaded. A meta path finder needs only
    ``find_spec``: not subclassing ``importlib.abc.MetaPathFinder`` spares every tool's start the
    import of ``importlib.abc`` (about a third of the package's import time)."""

    def __init__(self, module: str, then) -> None:
        self.module, self.then = module, then

    def find_spec(self, name, path, target=None):
        if name != self.module:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            execute = spec.loader.exec_module

            def execute_then(module) -> None:
                execute(module)
                self.then()

            spec.loader.exec_module = execute_then
        return spec


def register_with_user_dir() -> None:
    """Make fairseq's ``--user-dir`` register the plugin although a tool imported the package
    before fairseq: fairseq finds it imported already and only says so. Called once fairseq has
    loaded; registering then and there could meet the plugin's own modules half-imported."""
    from fairseq import utils

    imports = utils.import_user_module
    package = os.path.realpath(os.path.dirname(__file__))

    def import_user_module(args) -> None:
        imports(args)
        user_dir = getattr(args, "user_dir", None)
        if user_dir and os.path.realpath(user_dir) == package:
            register()

    utils.import_user_module = import_user_module


if "fairseq" in sys.modules:
    register()
else:
    sys.meta_path.insert(0, AfterImport("fairseq", register_with_user_dir))


def __getattr__(name: str):
    """``MultimodalTranslator`` loads fairseq, so it is imported when first asked for."""
    if name == "MultimodalTranslator":
        from fairseq_mmt_adv.translation.translator import MultimodalTranslator

        return MultimodalTranslator
    raise AttributeError(f"module 'fairseq_mmt_adv' has no attribute {name!r}")
