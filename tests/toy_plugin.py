"""A small, fast, real plugin for core tests: a generated dataset, a linear model, a few SGD
steps, and components that break their contracts on purpose (to test job isolation).

It is registered in-process (``Registry.load(extra_plugins=[("toy", toy_plugin)])``) or
through a fake distribution's entry point, exactly like a third-party plugin.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time

import torch
from pydantic import PositiveInt

from benchmark import (
    Dataset,
    DatasetSpec,
    DebiaserSpec,
    Evaluation,
    EvaluatorSpec,
    ExplainerSpec,
    ModelSpec,
    Split,
    hookimpl,
)


def make_bars(n_train: int = 160, n_test: int = 80, size: int = 6) -> Dataset:
    """Two classes told apart by which half of a noisy image is brighter; fixed generator."""
    g = torch.Generator().manual_seed(1234)

    def split(n: int) -> Split:
        y = torch.arange(n) % 2
        x = torch.rand(n, 1, size, size, generator=g) * 0.5
        half = size // 2
        x[y == 0, :, :, :half] += 0.5
        x[y == 1, :, :, half:] += 0.5
        return Split(x=x.clamp(0, 1), y=y.long(), groups=(torch.arange(n) % 3).long())

    return Dataset(train=split(n_train), test=split(n_test), num_classes=2)


def linear(num_classes: int, input_shape: tuple[int, int, int]) -> torch.nn.Module:
    c, h, w = input_shape
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(c * h * w, num_classes))


def sgd(
    model: torch.nn.Module, data: Split, *, seed: int, steps: PositiveInt = 30, lr: float = 0.5
) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(data), (32,), generator=g)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(data.x[idx]), data.y[idx]).backward()
        opt.step()
    return model


def accuracy(context, scale: float = 1.0) -> Evaluation:
    with torch.no_grad():
        pred = context.model(context.dataset.test.x).argmax(1)
    return Evaluation({"accuracy": scale * float((pred == context.dataset.test.y).float().mean())})


def explode(context) -> Evaluation:
    raise RuntimeError("evaluator exploded on purpose")


def sleep_forever(context, seconds: float = 3600.0) -> Evaluation:
    """Hangs (a plugin stuck in a deadlock or an endless loop)."""
    time.sleep(seconds)
    return Evaluation({"x": 1.0})


def segfault(context) -> Evaluation:
    """Crashes the interpreter in native code, as a buggy C extension would."""
    ctypes.string_at(0)
    return Evaluation({"x": 1.0})


def hard_exit(context) -> Evaluation:
    os._exit(1)


def soft_exit(context) -> Evaluation:
    sys.exit(0)


def keyboard(context) -> Evaluation:
    raise KeyboardInterrupt("raised by plugin code")


def huge_error(context) -> Evaluation:
    raise ValueError("x" * 5_000_000)


def weight_norm(context) -> Evaluation:
    """A continuous score that differs between any two trainings (lower is better)."""
    norm = sum(float(p.detach().pow(2).sum()) for p in context.model.parameters()) ** 0.5
    count = sum(p.numel() for p in context.model.parameters())
    return Evaluation({"norm": norm, "parameters": float(count)})


def raise_message(context, message: str = "boom") -> Evaluation:
    """Fails with the message a test gives it (hostile text for the escaping tests)."""
    raise RuntimeError(message)


def not_a_number(context) -> Evaluation:
    return Evaluation({"score": float("nan")})


def attribution_mass(context) -> Evaluation:
    x = context.dataset.test.x[:8]
    attributions = context.explain(context.model, x, context.dataset.test.y[:8])
    return Evaluation({"mass": float(attributions.abs().sum())})


def gradient(model, x, target):
    x = x.clone().requires_grad_(True)
    model(x).gather(1, target[:, None]).sum().backward()
    return x.grad


def wrong_shape(model, x, target):
    return torch.zeros(x.shape[0], x.shape[2])


@hookimpl
def bench_register_datasets(register):
    register(
        DatasetSpec(
            "toy-bars",
            make_bars,
            params={"n_train": 160},
            version="1",
            provides=frozenset({"images", "groups"}),
        )
    )


@hookimpl
def bench_register_models(register):
    register(ModelSpec("toy-linear", linear, version="1", provides=frozenset({"differentiable"})))
    register(ModelSpec("toy-wrong-width", wrong_width, version="1"))


@hookimpl
def bench_register_debiasers(register):
    register(DebiaserSpec("toy-sgd", sgd, version="1", params={"steps": 30, "lr": 0.5}))
    register(
        DebiaserSpec(
            "toy-group-sgd",
            sgd,
            version="1",
            params={"steps": 30, "lr": 0.5},
            requires=frozenset({"groups", "conv"}),
        )
    )


@hookimpl
def bench_register_explainers(register):
    register(
        ExplainerSpec("toy-gradient", gradient, version="1", requires=frozenset({"differentiable"}))
    )
    register(ExplainerSpec("toy-wrong-shape", wrong_shape, version="1"))


def accuracy_curve(context) -> Evaluation:
    """Accuracy as more and more pixels are zeroed: a curve stored as an array."""
    test = context.dataset.test
    curve = []
    with torch.no_grad():
        for k in range(4):
            x = test.x.clone()
            x[..., : k * 2] = 0
            curve.append(float((context.model(x).argmax(1) == test.y).float().mean()))
    return Evaluation({"first": curve[0]}, arrays={"curve": curve})


def plot_curves(results):
    """One line per (debiaser, seed): the figure hook of ``toy-curve``."""
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots()
    for _, row in results.iterrows():
        axis.plot(row["arrays"]["curve"], label=f"{row['debiaser']} seed {row['seed']}")
    axis.legend()
    return {"curves": figure}


def broken_plot(results):
    raise RuntimeError("plotting failed on purpose")


@hookimpl
def bench_register_evaluators(register):
    register(
        EvaluatorSpec(
            "toy-curve",
            accuracy_curve,
            version="1",
            directions={"first": "higher"},
            figures=plot_curves,
        )
    )
    register(
        EvaluatorSpec(
            "toy-badfig",
            accuracy_curve,
            version="1",
            directions={"first": "higher"},
            figures=broken_plot,
        )
    )
    register(
        EvaluatorSpec(
            "toy-accuracy",
            accuracy,
            version="1",
            params={"scale": 1.0},
            directions={"accuracy": "higher"},
        )
    )
    register(EvaluatorSpec("toy-nan", not_a_number, version="1", directions={"score": "lower"}))
    register(
        EvaluatorSpec(
            "toy-norm",
            weight_norm,
            version="1",
            directions={"norm": "lower", "parameters": "neither"},
        )
    )
    register(
        EvaluatorSpec(
            "toy-raise",
            raise_message,
            version="1",
            params={"message": "boom"},
            directions={"x": "higher"},
        )
    )
    # fault injection: an exception, and hangs and crashes that only an isolated worker survives
    faults = {
        "toy-explode": explode,
        "toy-sleep": sleep_forever,
        "toy-segfault": segfault,
        "toy-os-exit": hard_exit,
        "toy-sys-exit": soft_exit,
        "toy-keyboard": keyboard,
        "toy-huge-error": huge_error,
    }
    for name, factory in faults.items():
        register(EvaluatorSpec(name, factory, version="1", directions={"x": "higher"}))
    register(
        EvaluatorSpec(
            "toy-mass",
            attribution_mass,
            version="1",
            requires=frozenset({"explainer"}),
            directions={"mass": "higher"},
        )
    )


def wrong_width(num_classes: int, input_shape: tuple[int, int, int]) -> torch.nn.Module:
    """Ignores num_classes: the runner must catch it before any evaluator sees its logits."""
    return linear(num_classes + 1, input_shape)
