"""Import torchvision on a CPU-only torch.

The torchvision wheels of the package index are built against torch's CUDA build. Beside the CPU
build of the same torch release (``torch==2.13.0+cpu``, which ``scripts/setup-env.sh`` installs)
their C++ operators cannot load; torchvision allows for that everywhere but in its
``_meta_registrations``, which registers shape functions for ``torchvision::nms`` and
``torchvision::qnms`` whether they exist or not, so that ``import torchvision`` fails with
"operator torchvision::nms does not exist" (pytorch/vision issue 9085). :func:`import_torchvision`
declares those two operators (their signatures only: calling them raises torch's "no kernel"
error) and imports torchvision again. The models and transforms this package uses are Python and
torch alone; they work the same either way.
"""

from types import ModuleType

import torch

MISSING_OPERATOR = "operator torchvision::nms does not exist"
SIGNATURES = [
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
]
_declared: list[torch.library.Library] = []  # the declarations last as long as this reference


def import_torchvision() -> ModuleType:
    """``torchvision``, whose C++ operators may be missing (a CPU-only torch); an ImportError
    when it is not installed, a RuntimeError when it fails for another reason."""
    try:
        import torchvision
    except RuntimeError as error:
        if MISSING_OPERATOR not in str(error) or _declared:
            raise
        library = torch.library.Library("torchvision", "DEF")
        for signature in SIGNATURES:
            library.define(signature)
        _declared.append(library)
        import torchvision
    return torchvision
