"""The built-in plugins on a CUDA device give the CPU's numbers, within stated tolerances.

With ``--device cuda`` the core moves a job's dataset tensors and its model to the GPU before
any plugin sees them; the plugins create their own tensors there, draw their randomness on the
CPU and hand numbers back on the CPU (``benchmark.kit.devices``). Here every registered explainer,
every registered debiaser (one short epoch) and a representative set of evaluators run twice,
on the CPU and on the GPU, from the same weights and inputs, and are compared.

Tolerances. TF32 is switched off in this module (cuDNN convolutions use it by default), so the
two devices differ by float32 rounding and reduction order only:

* explainers: relative L2 error of the map at most 1e-3 (rounding can only move a ReLU or
  max-pool decision that sat within about 1e-6 of a tie); ``random`` is bit-identical (drawn
  on the CPU from the image's bytes). SmoothGrad, SmoothGrad-Squared and VarGrad draw their
  noise inside captum on the input's device, a stream the CPU does not reproduce: for them
  only shape, finiteness and device are checked.
* debiasers: seed-cnn with dropout 0 (CUDA draws other dropout masks than the CPU from the
  same seed), 256 images, one epoch of four batches from the same initial weights. Every
  random draw of the debiasers themselves is made on the CPU, so the trained models' test
  logits agree to 1e-2 of their largest magnitude; a debiaser that initialised or sampled on
  the device would miss that by orders of magnitude.
* evaluators: every metric is a finite Python number, no array holds a tensor, the model and
  data stay on the GPU, and the metrics agree with the CPU's to ``rel 1e-3, abs 5e-3`` for
  evaluators that only run the given model, ``rel 5e-2, abs 5e-2`` for those that retrain
  (their retrained models agree closely, but one pixel ranked differently near a tie changes
  the retraining data). An evaluator that refuses the CPU input must refuse the GPU input the
  same way.

The helpers of ``benchmark.kit.devices`` are also checked on the CPU, so part of this module runs on
every machine; everything else is skipped without a GPU.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from benchmark.kit.devices import as_numpy, device_of, forked_rng, initialise_on_cpu
from benchmark.registry import Registry
from benchmark.specs import Dataset, Evaluation, EvaluationContext, ModelSpec, Split
from plugins.datasets.bam_mnist import load_bam_mnist
from plugins.datasets.colored_mnist import load_colored_mnist
from plugins.datasets.mnist import load_mnist
from plugins.debiasers.erm import train_erm
from plugins.explainers.gradients import gradient
from plugins.models.seed_cnn import build_seed_cnn

needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="needs a CUDA GPU: compares the built-in plugins on the GPU with the CPU",
)

REPO = Path(__file__).resolve().parent.parent
REGISTRY = Registry.load()
CPU = torch.device("cpu")
CUDA = torch.device("cuda")
LAYER = "conv_layers.3"
NOISY_EXPLAINERS = {"smoothgrad", "smoothgrad-sq", "vargrad"}


@pytest.fixture(autouse=True)
def exact_float32():
    """TF32 off for matrix products and cuDNN convolutions, restored afterwards."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


# -- moving things as the core's worker does ---------------------------------------------------


def on(device: torch.device, value: Any) -> Any:
    """``value`` with every tensor moved to ``device``: tensors, dicts (recursively), splits
    (``x``, ``y``, ``groups``, ``extras``) and datasets, as the worker moves a job's data."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, Split):
        return dataclasses.replace(
            value,
            x=on(device, value.x),
            y=on(device, value.y),
            groups=on(device, value.groups),
            extras=on(device, dict(value.extras)),
        )
    if isinstance(value, Dataset):
        train, test = on(device, value.train), on(device, value.test)
        return dataclasses.replace(value, train=train, test=test)
    if isinstance(value, dict):
        return {key: on(device, item) for key, item in value.items()}
    return value


def seed_cnn(seed: int, input_shape: tuple[int, int, int] = (1, 28, 28)) -> nn.Module:
    """A seed-cnn without dropout, initialised (on the CPU) from ``seed``."""
    torch.manual_seed(seed)
    return build_seed_cnn(10, input_shape, dropout=0.0)


def trainer(input_shape: tuple[int, int, int]):
    """``context.train`` as the core provides it, uncached: build on the CPU from the seed, move
    to the split's device, train two ERM epochs there."""

    def train(split: Split, *, seed: int) -> nn.Module:
        model = seed_cnn(seed, input_shape).to(split.x.device)
        return train_erm(model, split, seed=seed, epochs=2)

    return train


def explain_gradient(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``context.explain`` as the core provides it for the ``gradient`` explainer, uncached."""
    model.eval()
    return gradient(model, x, target).detach().float()


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    got, expected = got.detach().double().cpu(), expected.detach().double().cpu()
    scale = float(expected.norm())
    return float((got - expected).norm()) / (scale if scale > 0 else 1.0)


def tensors_in(value: Any, where: str = "arrays") -> list[str]:
    """Paths of the tensors anywhere in ``value`` (numbers must reach the store as numbers)."""
    if isinstance(value, torch.Tensor):
        return [where]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in tensors_in(v, f"{where}[{k!r}]")]
    if isinstance(value, list | tuple):
        return [p for i, v in enumerate(value) for p in tensors_in(v, f"{where}[{i}]")]
    return []


# -- fixtures (built on the CPU; a skipped test never builds them) -----------------------------


@pytest.fixture(scope="module")
def mnist() -> Dataset:
    data = load_mnist(train_limit=256, test_limit=64)
    groups = torch.arange(len(data.train)) % 2  # a bias label distinct from the class
    return dataclasses.replace(data, train=dataclasses.replace(data.train, groups=groups))


@pytest.fixture(scope="module")
def trained(mnist) -> nn.Module:
    return trainer(mnist.input_shape)(mnist.train, seed=0).eval()


@pytest.fixture(scope="module")
def setups(mnist, trained) -> dict[str, tuple[Dataset, nn.Module]]:
    """Dataset and trained (CPU) model per dataset kind the evaluators below need."""
    colored = load_colored_mnist(rho=0.9, train_limit=256, test_limit=64)
    bam = load_bam_mnist(train_limit=256, test_limit=32)
    return {
        "mnist": (mnist, trained),
        "colored": (colored, trainer(colored.input_shape)(colored.train, seed=0).eval()),
        "bam": (bam, trainer(bam.input_shape)(bam.train, seed=0).eval()),
    }


# -- benchmark.kit.devices, on any machine ----------------------------------


def test_device_helpers_on_the_cpu():
    assert device_of(nn.ReLU()) == CPU and device_of(nn.Linear(2, 2)) == CPU
    t = torch.ones(2, requires_grad=True)
    assert isinstance(as_numpy(t), np.ndarray) and as_numpy([1, 2]).tolist() == [1, 2]
    layer = nn.Linear(4, 3)
    state = torch.get_rng_state()
    with forked_rng(CPU):
        torch.manual_seed(5)
        expected = nn.Linear(4, 3).state_dict()
    assert torch.equal(torch.get_rng_state(), state)
    assert initialise_on_cpu(layer, 5, lambda m: m.reset_parameters()) is layer
    assert torch.equal(torch.get_rng_state(), state)  # the caller's stream is untouched
    assert all(torch.equal(layer.state_dict()[k], v) for k, v in expected.items())


@needs_cuda
def test_initialise_on_cpu_gives_a_cuda_module_the_cpu_weights_and_keeps_cuda_rng():
    cpu_layer, cuda_layer = nn.Conv2d(3, 8, 3), nn.Conv2d(3, 8, 3).to(CUDA)
    cuda_state = torch.cuda.get_rng_state()
    initialise_on_cpu(cpu_layer, 7, lambda m: m.reset_parameters())
    initialise_on_cpu(cuda_layer, 7, lambda m: m.reset_parameters())
    assert torch.equal(torch.cuda.get_rng_state(), cuda_state)
    assert device_of(cuda_layer).type == "cuda"
    for name, value in cpu_layer.state_dict().items():
        assert torch.equal(cuda_layer.state_dict()[name].cpu(), value), name


# -- explainers ------------------------------------------------------------------------------


def run_explainer(name: str, model: nn.Module, x: torch.Tensor, target: torch.Tensor):
    spec = REGISTRY.get("explainer", name)
    params = dict(spec.params)
    if spec.uses_target_layer:
        params["target_layer"] = LAYER
    return spec.factory(model, x, target, **params)


@needs_cuda
@pytest.mark.parametrize(
    "name", [s.name for s in REGISTRY.specs("explainer") if s.output == "attribution"]
)
def test_every_explainer_on_cuda_matches_the_cpu(name, mnist, trained):
    x, y = mnist.test.x[:4].clone(), mnist.test.y[:4].clone()
    expected = run_explainer(name, trained, x, y)
    model, x_gpu, y_gpu = copy.deepcopy(trained).to(CUDA), x.to(CUDA), y.to(CUDA)
    got = run_explainer(name, model, x_gpu, y_gpu)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
    assert got.device == x_gpu.device and got.shape == expected.shape
    assert torch.isfinite(got).all()
    assert torch.equal(x_gpu.cpu(), x) and device_of(model).type == "cuda"
    if name == "random":
        assert torch.equal(got.cpu(), expected)
    elif name not in NOISY_EXPLAINERS:
        assert relative_error(got, expected) <= 1e-3, name


# -- debiasers -------------------------------------------------------------------------------

SHORT = {"epochs": 1, "batch_size": 64}
DEBIASER_PARAMS = {"jtt": {"first_epochs": 1}, "bottleneck-reweight": {"warmup_epochs": 0}}
"""One epoch of four batches each; JTT identifies after one epoch, bottleneck re-weighting
weights from the first batch (so both do their own work within the epoch)."""


@needs_cuda
@pytest.mark.parametrize(
    "name", [s.name for s in REGISTRY.specs("debiaser") if s.modalities == {"image"}]
)
def test_every_debiaser_on_cuda_matches_the_cpu(name, mnist):
    """Every image-only debiaser (mtl-multimodal: tests/test_multimodal.py)."""
    spec = REGISTRY.get("debiaser", name)
    params = {**spec.params, **SHORT, **DEBIASER_PARAMS.get(name, {})}

    def fresh() -> nn.Module:  # built and prepared on the CPU, as the worker does
        model = seed_cnn(123)
        return model if spec.prepare is None else spec.prepare(model, 10, **params)

    expected_model = spec.factory(fresh(), mnist.train, seed=0, **params)
    got_model = spec.factory(fresh().to(CUDA), on(CUDA, mnist.train), seed=0, **params)
    assert isinstance(got_model, nn.Module) and not got_model.training
    assert all(p.device.type == "cuda" for p in got_model.parameters())
    x = mnist.test.x[:32]
    with torch.no_grad():
        expected, got = expected_model(x), got_model(x.to(CUDA)).cpu()
    assert torch.isfinite(got).all() and got.shape == expected.shape
    assert float((got - expected).abs().max()) <= 1e-2 * float(expected.abs().max()), name


# -- evaluators ------------------------------------------------------------------------------

FORWARD = (1e-3, 5e-3)
RETRAINING = (5e-2, 5e-2)
EVALUATORS: dict[str, tuple[str, str, dict[str, Any], tuple[float, float]]] = {
    # label: (evaluator, dataset, params, (rel_tol, abs_tol))
    "classification": ("classification", "mnist", {}, FORWARD),
    "fairness": ("fairness", "colored", {}, FORWARD),
    "completeness-soundness": ("completeness-soundness", "mnist", {"n_images": 8}, FORWARD),
    "pixel-flipping": ("pixel-flipping", "mnist", {"n_images": 16}, FORWARD),
    "deletion": ("deletion", "mnist", {"n_images": 16}, FORWARD),
    "insertion": ("insertion", "mnist", {"n_images": 16}, FORWARD),
    "region-perturbation": ("region-perturbation", "mnist", {"n_images": 16}, FORWARD),
    "road": ("road", "mnist", {"n_images": 16, "percentages": [20, 50, 80]}, FORWARD),
    "sanity-model": ("sanity-model", "mnist", {"n_images": 8}, FORWARD),
    "quantus-sparseness": ("quantus", "mnist", {"metric": "Sparseness", "n_images": 8}, FORWARD),
    "quantus-region": (
        "quantus",
        "mnist",
        {
            "metric": "RegionPerturbation",
            "metric_params": {"patch_size": 7, "regions_evaluation": 3},
            "n_images": 8,
        },
        FORWARD,
    ),
    "sanity-data": ("sanity-data", "mnist", {"n_images": 8}, RETRAINING),
    "roar": ("roar", "mnist", {"thresholds": [50], "retrain_seeds": 2}, RETRAINING),
    "bam": ("bam", "bam", {"n_images": 32, "patch_steps": 5}, RETRAINING),
}


def make_context(data: Dataset, model: nn.Module, device: torch.device) -> EvaluationContext:
    fields = {f.name for f in dataclasses.fields(EvaluationContext)}
    extra = {"device": device} if "device" in fields else {}
    return EvaluationContext(
        dataset=data,
        model=model,
        model_spec=ModelSpec("seed-cnn", build_seed_cnn, target_layer=LAYER),
        seed=0,
        train=trainer(data.input_shape),
        explain=explain_gradient,
        explainer_spec=REGISTRY.get("explainer", "gradient"),
        **extra,
    )


def evaluate(factory, data: Dataset, model: nn.Module, device: torch.device, params: dict):
    """``(Evaluation, None)`` or ``(None, the ValueError it raised)``."""
    try:
        return factory(make_context(data, model, device), **params), None
    except ValueError as exc:
        return None, exc


def check_numbers_on_cpu(evaluation: Evaluation) -> None:
    evaluation.check()
    for name, value in evaluation.metrics.items():
        assert type(value) in (float, int), f"metric {name} is a {type(value).__name__}"
    assert not tensors_in(evaluation.arrays)


def compare(got: Evaluation, expected: Evaluation, rel: float, abs_: float) -> None:
    assert got.metrics.keys() == expected.metrics.keys()
    assert got.arrays.keys() == expected.arrays.keys()
    far = {
        name: (got.metrics[name], value)
        for name, value in expected.metrics.items()
        if not math.isclose(got.metrics[name], value, rel_tol=rel, abs_tol=abs_)
    }
    assert not far, f"(cuda, cpu) differ beyond rel {rel} / abs {abs_}: {far}"


@needs_cuda
@pytest.mark.parametrize("label", EVALUATORS)
def test_evaluators_on_cuda_match_the_cpu(label, setups):
    name, dataset, params, (rel, abs_) = EVALUATORS[label]
    factory = REGISTRY.get("evaluator", name).factory
    data, model = setups[dataset]
    expected, refused = evaluate(factory, data, model, CPU, params)
    data_gpu, model_gpu = on(CUDA, data), copy.deepcopy(model).to(CUDA)
    got, refused_gpu = evaluate(factory, data_gpu, model_gpu, CUDA, params)
    if refused is not None:  # e.g. BAM when no test image is classified correctly
        assert refused_gpu is not None and type(refused_gpu) is type(refused), refused_gpu
        return
    assert refused_gpu is None, refused_gpu
    check_numbers_on_cpu(expected)
    check_numbers_on_cpu(got)
    compare(got, expected, rel, abs_)
    assert device_of(model_gpu).type == "cuda" and data_gpu.test.x.device.type == "cuda"


@needs_cuda
def test_the_example_plugins_calibration_on_cuda_matches_the_cpu(monkeypatch, setups):
    monkeypatch.syspath_prepend(str(REPO / "examples" / "bench-example-plugin"))
    calibration = importlib.import_module("bench_example_plugin.calibration")
    data, model = setups["mnist"]
    expected = calibration.evaluate_calibration(make_context(data, model, CPU))
    got = calibration.evaluate_calibration(
        make_context(on(CUDA, data), copy.deepcopy(model).to(CUDA), CUDA)
    )
    check_numbers_on_cpu(got)
    compare(got, expected, *FORWARD)
