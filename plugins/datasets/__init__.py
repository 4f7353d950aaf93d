"""Built-in datasets: real digits that ship with dependencies (nothing is downloaded).

Each dataset module exposes ``specs()``; this module only lists them.
"""

from __future__ import annotations

from benchmark.kit.registration import register_specs_of
from plugins.datasets import bam_mnist, block_mnist, colored_mnist, digits, mnist

MODULES = (mnist, digits, bam_mnist, colored_mnist, block_mnist)

bench_register_datasets = register_specs_of(MODULES)
