"""Make PyPI's CUDA-linked torchvision importable next to a CPU build of torch.

transformers' Qwen-VL video processors need torchvision. The registry's torchvision 0.28.0 is
linked against CUDA; with the CPU torch its `_meta_registrations` fail on the missing
`torchvision::nms` operator and the whole import fails (and with it `transformers` processors
and `trl`). Defining the two operator schemas before the import is enough for everything vaur1
uses (transforms.v2.functional). Where torchvision imports cleanly this does nothing.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import sysconfig
from pathlib import Path

_LIBRARY = None
PTH_NAME = "vaur1-torchvision-shim.pth"
# One line Python runs at every start of this environment: cheap (no torch), it only registers a finder.
PTH_LINE = "import vaur1._torchvision_shim as _s; _s.install_import_hook()\n"


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


def _define_operators() -> None:
    global _LIBRARY
    import torch

    if _LIBRARY is None:
        _LIBRARY = torch.library.Library("torchvision", "DEF")
        _LIBRARY.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _LIBRARY.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


class _ShimmingLoader(importlib.abc.Loader):
    """torchvision's own loader; when its import fails on the missing operators, define them and
    import it again."""

    def __init__(self, loader) -> None:
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        try:
            self.loader.exec_module(module)
        except RuntimeError as err:
            if "torchvision::" not in str(err):
                raise
            for name in [m for m in sys.modules if m.startswith("torchvision.")]:
                del sys.modules[name]
            _define_operators()
            self.loader.exec_module(module)


class _TorchvisionFinder(importlib.abc.MetaPathFinder):
    """Hands out torchvision's spec with `_ShimmingLoader`; availability checks (find_spec without an
    import) go through it too, so it stays on sys.meta_path."""

    def find_spec(self, name, path, target=None):
        if name != "torchvision":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _ShimmingLoader(spec.loader)
                return spec
        return None


def install_import_hook() -> None:
    """Apply the shim to whatever imports torchvision first in this process (transformers, trl, vLLM's
    subprocesses), only when that import would fail; nothing is imported until then."""
    if "torchvision" not in sys.modules and not any(isinstance(f, _TorchvisionFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _TorchvisionFinder())


def write_pth(site_packages: str | Path | None = None) -> Path:
    """Install the import hook environment-wide: a .pth file in site-packages (`make venv` runs this)."""
    folder = Path(site_packages or sysconfig.get_paths()["purelib"])
    path = folder / PTH_NAME
    path.write_text(PTH_LINE, encoding="utf-8")
    return path


if __name__ == "__main__":
    print(write_pth())
