"""The built-in `counterfactuals` suite: what it plans, with and without a Fashion-MNIST root."""

from __future__ import annotations

import gzip

import numpy as np

from benchmark import planner
from benchmark import suite as suite_module
from benchmark.registry import Registry

CF_EXPLAINERS = {"cf-wachter", "cf-proto", "cf-nearest", "cf-pgd"}


def test_plans_mnist_only_when_no_fashion_mnist_root_is_given():
    suite = suite_module.load("counterfactuals", Registry.load())
    plan = planner.expand(suite)
    assert {j.dataset.label for j in plan.jobs} == {"mnist"}
    assert any("fashion_mnist_root" in reason for reason in map(str, suite.dropped))
    per_model = [j for j in plan.jobs if not j.members]
    cells = {(j.model.label, j.debiaser.label) for j in per_model}
    assert cells == {("seed-cnn", "erm"), ("keras-cnn", "erm"), ("seed-cnn", "trades")}
    counterfactual = [j for j in per_model if j.evaluator.name == "counterfactual"]
    assert {j.explainer.label for j in counterfactual} == CF_EXPLAINERS
    assert len(counterfactual) == 3 * 4 * 3  # cells x explainers x seeds
    sets = [j for j in plan.jobs if j.members]
    assert len(sets) == 3 * 4 and all(len(j.members) == 3 for j in sets)
    assert plan.trainings()[0] == 3 * 3


def _idx(path, array: np.ndarray) -> None:
    dtype_code = 0x08
    header = bytes([0, 0, dtype_code, array.ndim])
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + dims + array.astype(np.uint8).tobytes())


def test_plans_fashion_mnist_too_when_its_root_is_given(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 60), ("t10k", 20)):
        _idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28)))
        _idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    suite = suite_module.load(
        "counterfactuals", Registry.load(), parameters={"fashion_mnist_root": str(tmp_path)}
    )
    plan = planner.expand(suite)
    assert {j.dataset.label for j in plan.jobs} == {"mnist", "fashion-mnist"}
    fashion = [j for j in plan.jobs if j.dataset.label == "fashion-mnist"]
    assert {j.dataset.params["root"] for j in fashion} == {str(tmp_path)}
