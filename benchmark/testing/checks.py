"""Contract checks a plugin author calls from their own tests.

The runner enforces what it can at run time (shapes, dtypes, finiteness) and fails the job; these
checks go further, on tiny real data, before a suite ever runs: that an explainer leaves its
inputs and the global random state alone, is deterministic, and explains each image as if it
were alone in its batch (a batch-dependent explanation ranks differently in every evaluator);
that an evaluator declares every metric it returns; that a model adapts to input shapes and
names a CAM layer that exists; that a plugin implements only real hooks and clashes with no
installed component. Each check raises ``AssertionError`` with a message naming the component,
so it reads well in pytest, and returns what it computed for further assertions.
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from benchmark.executors.contracts import check_attributions, check_counterfactuals
from benchmark.modalities import TEXT
from benchmark.registry import PluginRecord, Registry, unknown_hooks
from benchmark.specs import (
    Dataset,
    DatasetSpec,
    DebiaserSpec,
    Evaluation,
    EvaluatorSpec,
    ExplainerSpec,
    ModelSpec,
    Split,
)
from benchmark.testing.context import make_context

TINY_DATA = {"train_limit": 300, "test_limit": 64}
"""MNIST subset the checks train on: a second of training, enough for non-trivial maps."""
TINY_TRAINING = {"epochs": 1}
CHECK_VOCABULARY = 12
"""The vocabulary size ``check_model`` builds a caption model with."""


def _spec(registry: Registry, kind: str, spec: Any) -> Any:
    return registry.get(kind, spec) if isinstance(spec, str) else spec


def check_explainer(
    spec: ExplainerSpec | str,
    *,
    params: Mapping[str, Any] | None = None,
    model: str = "seed-cnn",
    dataset: str = "mnist",
    n_images: int = 6,
    atol: float = 1e-5,
    registry: Registry | None = None,
    cache_dir: str | None = None,
) -> torch.Tensor:
    """Run the explainer on a tiny trained model and check its contract; return the maps.

    Checked: a ``torch.Tensor`` of shape ``(N, 1 or C, H, W)``, float32, finite; ``x`` and
    ``target`` unchanged and ``x`` not left requiring grad; the model's weights unchanged; the
    global torch and numpy random states unchanged; the same output on a second call; and,
    unless the spec declares ``batch_independent=False``, each image's map the same (within
    ``atol``, relative to the largest value) when the batch is reversed or halved, so a map
    never depends on its neighbours. A counterfactual explainer (``output="counterfactual"``)
    is asked for the next class of each image's label and checked against its own contract
    (images shaped like ``x`` in [0, 1], all-NaN where none was found); NaN compares equal to
    NaN in the determinism and batch checks.
    """
    registry = registry or Registry.load()
    spec = _spec(registry, "explainer", spec)
    context = make_context(
        dataset=dataset,
        model=model,
        dataset_params=TINY_DATA,
        debiaser_params=TINY_TRAINING,
        registry=registry,
        cache_dir=cache_dir,
    )
    net = context.model.eval()
    x = context.dataset.test.x[:n_images].clone()
    target = context.dataset.test.y[:n_images].clone()
    counterfactual = spec.output == "counterfactual"
    if counterfactual:
        target = (target + 1) % context.dataset.num_classes
    call = {**spec.params, **(params or {})}
    if spec.uses_target_layer:
        call["target_layer"] = context.model_spec.target_layer
    if spec.uses_training_data:
        call |= {"data": context.dataset.train, "cache_dir": context.cache_dir}

    def checked(out: Any, inputs: torch.Tensor) -> torch.Tensor:
        """The output after its contract check (not-found counterfactuals as -1, comparable)."""
        if counterfactual:
            check_counterfactuals(out, inputs, spec.name, spec.plugin)
            return out.detach().nan_to_num(nan=-1.0)
        return check_attributions(out, inputs, spec.name, spec.plugin)

    weights = {k: v.clone() for k, v in net.state_dict().items()}
    x_before, target_before = x.clone(), target.clone()
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()

    name = f"explainer '{spec.name}'"
    first = checked(spec.factory(net, x, target, **call), x)
    assert torch.equal(x, x_before), f"{name} modified its input x in place"
    assert torch.equal(target, target_before), f"{name} modified its target in place"
    assert not x.requires_grad, f"{name} left x requiring grad"
    assert all(torch.equal(v, weights[k]) for k, v in net.state_dict().items()), (
        f"{name} changed the model's weights"
    )
    assert torch.equal(torch.get_rng_state(), torch_state), (
        f"{name} disturbed torch's global random state (use benchmark.kit.seeding.seeded)"
    )
    assert all(
        np.array_equal(a, b) for a, b in zip(np.random.get_state(), numpy_state, strict=True)
    ), f"{name} disturbed numpy's global random state (use benchmark.kit.seeding.seeded)"
    again = checked(spec.factory(net, x, target, **call), x)
    assert torch.equal(again, first), f"{name} is not deterministic: a second call differs"
    if spec.batch_independent:
        scale = float(first.abs().max()) or 1.0
        half = max(1, len(x) // 2)
        for how, maps in (
            (
                "reversing the batch",
                checked(spec.factory(net, x.flip(0), target.flip(0), **call), x).flip(0),
            ),
            (
                "explaining half the batch",
                checked(spec.factory(net, x[:half], target[:half], **call), x[:half]),
            ),
        ):
            worst = float((maps - first[: len(maps)]).abs().max()) / scale
            assert worst <= atol, (
                f"{name} depends on the batch: {how} changes a map by {worst:.2e} of its "
                "largest value (seed per image, e.g. benchmark.kit.seeding.image_seed, or "
                "declare ExplainerSpec(batch_independent=False))"
            )
    return first


def check_evaluator(
    spec: EvaluatorSpec | str,
    *,
    params: Mapping[str, Any] | None = None,
    explainer: str = "gradient",
    model: str = "seed-cnn",
    dataset: str = "mnist",
    registry: Registry | None = None,
    cache_dir: str | None = None,
) -> Evaluation:
    """Run the evaluator on a tiny trained model (with ``explainer`` when it requires one) and
    check that it returns finite metrics, each declared in ``directions`` and in
    ``returns(params)``. Pass ``params`` to keep it small (``{"n_images": 16}``)."""
    registry = registry or Registry.load()
    spec = _spec(registry, "evaluator", spec)
    dataset_spec = registry.get("dataset", dataset)
    if "groups" in spec.requires and "groups" not in dataset_spec.provides:
        raise AssertionError(f"evaluator '{spec.name}' needs groups: pass a dataset with groups")
    context = make_context(
        dataset=dataset,
        model=model,
        explainer=explainer if "explainer" in spec.requires else None,
        dataset_params=TINY_DATA,
        debiaser_params=TINY_TRAINING,
        registry=registry,
        cache_dir=cache_dir,
    )
    call = {**spec.params, **(params or {})}
    evaluation = spec.factory(context, **call)
    name = f"evaluator '{spec.name}'"
    assert isinstance(evaluation, Evaluation), (
        f"{name} returned {type(evaluation).__name__}, not benchmark.specs.Evaluation"
    )
    try:
        evaluation.check()
    except ValueError as exc:
        raise AssertionError(f"{name}: {exc}") from None
    undeclared = sorted(set(evaluation.metrics) - set(spec.directions))
    assert not undeclared, f"{name} returned metrics without a direction: {undeclared}"
    promised = set(spec.returns(call))
    surprise = sorted(set(evaluation.metrics) - promised)
    assert not surprise, f"{name} returned {surprise}, which its metrics(params) does not list"
    return evaluation


def check_model(
    spec: ModelSpec | str,
    *,
    params: Mapping[str, Any] | None = None,
    input_shapes: Sequence[tuple[int, int, int]] = ((1, 28, 28), (3, 32, 32), (1, 16, 16)),
    num_classes: int = 10,
    registry: Registry | None = None,
) -> dict[tuple[int, int, int], torch.nn.Module]:
    """Build the model for several input shapes; check logits ``(N, num_classes)``, finite,
    and, where declared, the CAM target layer and a gradient reaching the input. A model that
    takes text (``benchmark.modalities``) is built with a small vocabulary and fed captions,
    one of them missing.

    A factory may refuse a shape it cannot take, but only with a ``ValueError`` that says so
    (that is what a job's error will show); at least one of ``input_shapes`` must work.
    """
    registry = registry or Registry.load()
    spec = _spec(registry, "model", spec)
    call = {**spec.params, **(params or {})}
    name = f"model '{spec.name}'"
    built: dict[tuple[int, int, int], torch.nn.Module] = {}
    text_model = TEXT in spec.modalities
    runtime = {"vocabulary_size": CHECK_VOCABULARY} if text_model else {}
    # three captions: two tokens, a full row, a missing one (all padding)
    captions = torch.tensor([[1, 2, 0, 0], [3, 4, 5, 6], [0, 0, 0, 0]]) % CHECK_VOCABULARY
    for shape in input_shapes:
        try:
            model = spec.factory(num_classes, shape, **runtime, **call)
        except ValueError:
            continue
        assert isinstance(model, torch.nn.Module), f"{name} factory returned {type(model)}"
        x = torch.rand(3, *shape, requires_grad="differentiable" in spec.provides)
        out = model.eval()(x, captions) if text_model else model.eval()(x)
        assert isinstance(out, torch.Tensor) and tuple(out.shape) == (3, num_classes), (
            f"{name} returned {getattr(out, 'shape', type(out))} for input {tuple(x.shape)}; "
            f"expected logits (3, {num_classes})"
        )
        assert torch.isfinite(out).all(), f"{name} returned non-finite logits for {shape}"
        if spec.target_layer:
            try:
                model.get_submodule(spec.target_layer)
            except AttributeError:
                raise AssertionError(
                    f"{name} declares target_layer '{spec.target_layer}', which the built "
                    "model does not have (ModelSpec.target_layer is a get_submodule path)"
                ) from None
        if "differentiable" in spec.provides:
            out[:, 0].sum().backward()
            assert x.grad is not None and torch.isfinite(x.grad).all(), (
                f"{name} provides 'differentiable' but no finite gradient reaches the input"
            )
        built[shape] = model
    assert built, f"{name} refused every input shape {list(input_shapes)}"
    return built


def check_plugin(plugin: types.ModuleType | object, name: str = "") -> PluginRecord:
    """Load ``plugin`` beside every installed plugin and check that it implements only real
    hooks, registers something, and clashes with no installed component's name."""
    unknown = unknown_hooks(plugin)
    assert not unknown, f"plugin implements unknown hooks: {unknown}"
    name = name or getattr(plugin, "__name__", type(plugin).__name__)
    installed = Registry.load()
    already = installed.pm.get_name(plugin) if installed.pm.is_registered(plugin) else None
    registry = installed if already else Registry.load(extra_plugins=[(name, plugin)])
    record = registry.plugins[already or name]
    assert record.status == "loaded", f"plugin '{record.name}' is {record.status}: {record.error}"
    assert not record.warning, f"plugin '{record.name}': {record.warning}"
    return record


def check_dataset(
    spec: DatasetSpec | str,
    *,
    params: Mapping[str, Any] | None = None,
    registry: Registry | None = None,
) -> Dataset:
    """Load the dataset twice and check the dataset contract: float32 images in [0, 1] of shape
    ``(N, C, H, W)``, int64 labels in ``[0, num_classes)``, ``groups`` (when provided) one int64
    per sample, and the same tensors on both loads (nothing random, nothing downloaded)."""
    registry = registry or Registry.load()
    spec = _spec(registry, "dataset", spec)
    call = {**spec.params, **(params or {})}
    name = f"dataset '{spec.name}'"
    data = spec.factory(**call)
    assert isinstance(data, Dataset), f"{name} returned {type(data).__name__}, not Dataset"
    for split_name, split in (("train", data.train), ("test", data.test)):
        where = f"{name} {split_name} split"
        assert split.x.dim() == 4, f"{where}: images of shape {tuple(split.x.shape)}, not NCHW"
        assert split.x.dtype == torch.float32, f"{where}: images are {split.x.dtype}"
        assert float(split.x.min()) >= 0 and float(split.x.max()) <= 1, f"{where}: not in [0, 1]"
        assert split.y.dtype == torch.int64 and split.y.shape == (len(split.x),), (
            f"{where}: labels must be int64 of shape (N,)"
        )
        assert int(split.y.min()) >= 0 and int(split.y.max()) < data.num_classes, (
            f"{where}: labels outside [0, {data.num_classes})"
        )
        if "groups" in spec.provides:
            assert split.groups is not None and split.groups.shape == split.y.shape, (
                f"{where}: provides 'groups' but has no int64 group per sample"
            )
    again = spec.factory(**call)
    assert torch.equal(again.train.x, data.train.x) and torch.equal(again.test.y, data.test.y), (
        f"{name} is not deterministic: a second load differs"
    )
    return data


def check_debiaser(
    spec: DebiaserSpec | str,
    *,
    params: Mapping[str, Any] | None = None,
    model: str = "seed-cnn",
    dataset: str = "mnist",
    registry: Registry | None = None,
) -> torch.nn.Module:
    """Train twice on a tiny split with the same seed: the debiaser returns a module in eval
    mode, with the same weights both times; one that does not require ``groups`` must train
    without them (it may not read them)."""
    registry = registry or Registry.load()
    spec = _spec(registry, "debiaser", spec)
    call = {**spec.params, **TINY_TRAINING, **(params or {})}
    data = registry.get("dataset", dataset).factory(train_limit=200, test_limit=10)
    split = data.train
    if "groups" not in spec.requires:
        split = Split(x=split.x, y=split.y)  # a debiaser that reads groups fails here
    model_spec = registry.get("model", model)
    name = f"debiaser '{spec.name}'"

    def train() -> torch.nn.Module:
        torch.manual_seed(0)
        net = model_spec.factory(data.num_classes, data.input_shape, **model_spec.params)
        if spec.prepare is not None:
            net = spec.prepare(net, data.num_classes, **call)
        trained = spec.factory(net, split, seed=0, **call)
        assert isinstance(trained, torch.nn.Module), f"{name} returned {type(trained)}"
        assert not trained.training, f"{name} returned its model in training mode"
        return trained

    first, second = train(), train()
    same = all(
        torch.equal(a, b)
        for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True)
    )
    assert same, f"{name} is not deterministic given the seed"
    return first
