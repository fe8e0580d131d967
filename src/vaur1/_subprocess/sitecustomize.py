"""Put on PYTHONPATH of child interpreters (see `vaur1.subprocess_env`) so that the torchvision
shim runs before the child imports transformers, even when it never imports vaur1."""

from vaur1._torchvision_shim import install_torchvision_shim

install_torchvision_shim()
