"""Training speed of the fairness backbones (``tox -e benchmarks``), seed-cnn for reference.

One benchmarked call is one optimisation step of the project's training loop
(``benchmark.kit.training.train_loop``: Adam, cross-entropy) on a batch of 64 images of
3x28x28, with the registered default parameters; an epoch on the 4,000 training images of a
fairness dataset is 63 such steps. CI runs these once with ``--benchmark-disable`` as plain
tests; timings are never asserted. Each call is checked to have done its real work: a finite
loss and changed weights.

Like the per-epoch numbers in the model modules' docstrings, these run on one intra-op thread:
on the benchmark's 2 cores shared with other jobs two OpenMP threads were 3-7x slower.
"""

import pytest
import torch
from torch import nn

from benchmark.kit.training import train_loop
from benchmark.specs import Split
from plugins import models as models_plugin

MODELS = ["seed-cnn", "simple-conv", "resnet18", "shufflenet", "pyramidnet"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def specs():
    registered = []
    models_plugin.bench_register_models(register=registered.append)
    return {spec.name: spec for spec in registered}


@pytest.mark.parametrize("name", MODELS)
def test_one_training_step_on_a_batch_of_64(benchmark, specs, name):
    generator = torch.Generator().manual_seed(0)
    batch = Split(
        x=torch.rand(64, 3, 28, 28, generator=generator),
        y=torch.randint(0, 10, (64,), generator=generator),
    )
    spec = specs[name]
    torch.manual_seed(0)
    model = spec.factory(10, (3, 28, 28), **spec.params)
    start = [p.detach().clone() for p in model.parameters()]
    losses: list[float] = []

    def step(b):
        loss = nn.functional.cross_entropy(model(b.x), b.y)
        losses.append(loss.item())
        return loss

    def one_step():
        return train_loop(model, batch, step, seed=0, epochs=1, batch_size=64)

    benchmark.pedantic(one_step, rounds=5, iterations=1, warmup_rounds=1)
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    changed = [
        not torch.equal(a, b.detach()) for a, b in zip(start, model.parameters(), strict=True)
    ]
    assert all(changed)
