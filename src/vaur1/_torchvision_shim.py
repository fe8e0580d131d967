"""Make PyPI's CUDA-linked torchvision importable next to a CPU build of torch.

transformers' Qwen-VL video processors need torchvision. The registry's torchvision 0.28.0 is
linked against CUDA; with the CPU torch its `_meta_registrations` fail on the missing
`torchvision::nms` operator and the whole import fails (and with it `transformers` processors
and `trl`). Defining the two operator schemas before the import is enough for everything vaur1
uses (transforms.v2.functional). Where torchvision imports cleanly this does nothing.
"""

from __future__ import annotations

import importlib.util
import sys

_LIBRARY = None


def install_torchvision_shim() -> bool:
    """Return True when the shim was needed and applied."""
    global _LIBRARY
    if "torchvision" in sys.modules or importlib.util.find_spec("torchvision") is None:
        return False
    try:
        import torchvision

        return False
    except RuntimeError as err:
        if "torchvision::" not in str(err):
            raise
    import torch

    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    _LIBRARY = torch.library.Library("torchvision", "DEF")
    _LIBRARY.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _LIBRARY.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    import torchvision  # noqa: F401

    return True
