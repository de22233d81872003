"""The built-in dataset kinds, one module each: ``synthetic:``, ``folder:``, ``ucf24:``, ``ssv2:``, ``kinetics:``.

Each module registers its factory with :func:`~videoxai.data.datasets.register_dataset`. The
registry imports this package on its first look-up, so a new kind is a new file here; the
samples, dataset classes and spec parsing the kinds share are in :mod:`videoxai.data.datasets`.
"""

# in this order, the order the kinds are listed in (``videoxai metrics``): the benchmark first
from . import synthetic, folder, ucf24, ssv2, kinetics  # noqa: F401
