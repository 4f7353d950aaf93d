"""Built-in datasets: real digits that ship with dependencies (nothing is downloaded), and the
datasets a user keeps on disk (Fashion-MNIST, the full MNIST, CIFAR-10, image folders), read
from the ``root`` a suite names (docs/local-datasets.md).

Each dataset module exposes ``specs()``; this module only lists them.
"""

from __future__ import annotations

from benchmark.kit.registration import register_specs_of
from plugins.datasets import (
    bam_mnist,
    block_mnist,
    caption_mnist,
    cifar10,
    colored_mnist,
    digits,
    idx_mnist,
    image_folder,
    mnist,
)

MODULES = (
    mnist,
    digits,
    bam_mnist,
    colored_mnist,
    block_mnist,
    caption_mnist,
    idx_mnist,
    cifar10,
    image_folder,
)

bench_register_datasets = register_specs_of(MODULES)
