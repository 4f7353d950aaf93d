"""Adversarial training debiasers: ``adv-pgd``, ``adv-fgsm-rs`` and ``trades``.

Each procedure trains on a few hundred real MNIST images and must return the input
architecture in eval mode, bit-identically for a seed, without reading ``data.groups`` (the
split of ``tests/test_debiasers_unsupervised.py`` whose ``groups`` raises). The attack runs in
the mode of the procedure's reference code. The FGSM-RS guard records finite accuracies and,
in a constructed collapse, stops and brings back the last good weights (Wong et al.'s rule);
the record survives the cache's ``torch.save`` / ``torch.load(weights_only=True)`` round trip
into the ``prepare``'d architecture. TRADES with ``beta = 0`` is ERM bit for bit, its loss is
``nn.KLDivLoss(reduction="sum") / N`` as the reference's, and its ``x'`` is the reference's
PGD loop. The slow test trains each procedure and ERM on the same data for the same epochs
and asks for a higher PGD robust accuracy on held-out images.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
from dataclasses import asdict

import pytest
import torch
from torch import nn

from benchmark.kit.seeding import stream_seed
from benchmark.registry import Registry
from benchmark.specs import Split
from plugins import debiasers as debiasers_plugin
from plugins.datasets.mnist import load_mnist
from plugins.debiasers import adversarial
from plugins.debiasers.adversarial import (
    ADVERSARIAL_TRAINING,
    GUARD,
    NOT_MEASURED,
    STOP,
    guard_accuracy,
    guard_subset,
    kl_per_sample,
    trades_example,
    trades_loss,
)
from plugins.debiasers.erm import train_erm
from plugins.evaluators.model_randomisation import randomisable_layers
from plugins.models.seed_cnn import build_seed_cnn
from tests.test_debiasers_unsupervised import GroupsForbidden

SPECS = {spec.name: spec for spec in adversarial.specs()}
NAMES = ("adv-pgd", "adv-fgsm-rs", "trades")
# one short epoch, few attack steps: the contracts, not the robustness
FAST = {
    "adv-pgd": {"epochs": 1, "steps": 3},
    "adv-fgsm-rs": {"epochs": 1, "guard_rows": 64, "guard_steps": 3},
    "trades": {"epochs": 1, "steps": 3},
}


@pytest.fixture(scope="module")
def mnist():
    return load_mnist(train_limit=300, test_limit=100)


@pytest.fixture(scope="module")
def train(mnist) -> Split:
    """The training split with hand-set groups: alternate rows."""
    return dataclasses.replace(mnist.train, groups=torch.arange(len(mnist.train)) % 2)


def fresh(name: str, dropout: float = 0.5, **params) -> nn.Module:
    """The same initial seed-cnn every time, prepared as the runner prepares it."""
    torch.manual_seed(123)
    model = build_seed_cnn(10, (1, 28, 28), dropout=dropout)
    prepare = SPECS[name].prepare
    if prepare is not None:
        model = prepare(model, 10, **{**SPECS[name].params, **params})
    return model


def fit(name: str, data: Split, seed: int = 0, **params) -> nn.Module:
    params = {**FAST[name], **params}
    return SPECS[name].factory(fresh(name, **params), data, seed=seed, **params)


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def same_parameters(a: nn.Module, b: nn.Module) -> bool:
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    return pa.keys() == pb.keys() and all(torch.equal(pa[k], pb[k]) for k in pa)


# --- registration -------------------------------------------------------------------------


def test_the_plugin_registers_the_three_procedures():
    specs = []
    debiasers_plugin.bench_register_debiasers(register=specs.append)
    assert set(NAMES) <= {spec.name for spec in specs}
    assert set(Registry.load().names("debiaser")) >= set(NAMES)  # through the entry point


@pytest.mark.parametrize("name", NAMES)
def test_spec_names_the_procedure_and_its_real_defaults(name):
    spec = SPECS[name]
    assert spec.name == name and spec.kind == "debiaser" and spec.version == "1"
    assert spec.description and "\n" not in spec.description
    assert spec.requires == {"differentiable"}  # unsupervised: no groups
    assert (spec.prepare is not None) == (name == "adv-fgsm-rs")
    signature = inspect.signature(spec.factory).parameters
    own = {
        key: p.default
        for key, p in signature.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and key != "seed"
    }
    assert signature["training"].kind is inspect.Parameter.VAR_KEYWORD
    assert spec.training == ADVERSARIAL_TRAINING and not set(own) & set(asdict(spec.training))
    assert dict(spec.params) == {**own, **asdict(ADVERSARIAL_TRAINING)}
    assert asdict(ADVERSARIAL_TRAINING) == {
        "optimizer": "adam",
        "lr": 0.001,
        "momentum": 0.9,
        "weight_decay": 0.0,
        "epochs": 10,
        "batch_size": 64,
    }
    assert spec.params["eps"] == 0.3 and spec.params["norm"] == "linf"


@pytest.mark.parametrize("name", NAMES)
def test_a_direct_call_trains_with_the_spec_defaults(name, train):
    small = {"epochs": 1, "batch_size": 100, "steps": 1, "guard_rows": 16, "guard_steps": 1}
    small = {k: v for k, v in small.items() if k in SPECS[name].params}
    spelled_out = {**SPECS[name].params, **small}
    assert same_weights(
        SPECS[name].factory(fresh(name, **small), train, seed=0, **small),
        SPECS[name].factory(fresh(name, **small), train, seed=0, **spelled_out),
    )


@pytest.mark.parametrize("name", NAMES)
def test_bad_threat_models_get_clear_errors(name, train):
    with pytest.raises(ValueError, match="norm must be one of"):
        fit(name, train, norm="l1")
    with pytest.raises(ValueError, match="eps must be positive"):
        fit(name, train, eps=0.0)


# --- the debiaser contract ----------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_in_eval_mode_and_the_input_architecture(name, train):
    a, b = fit(name, train), fit(name, train)
    assert not a.training and isinstance(a, type(build_seed_cnn(10, (1, 28, 28))))
    assert same_weights(a, b)  # bit-identical for the same seed
    assert not same_parameters(a, fit(name, train, seed=1))  # the seed matters
    assert not same_parameters(a, fresh(name))  # it trained
    extra = {GUARD, STOP} if name == "adv-fgsm-rs" else set()
    assert a.state_dict().keys() == build_seed_cnn(10, (1, 28, 28)).state_dict().keys() | extra


@pytest.mark.parametrize("name", NAMES)
def test_never_reads_groups(name, train):
    a = fit(name, train)
    assert same_weights(a, fit(name, dataclasses.replace(train, groups=None)))
    guarded = GroupsForbidden(x=train.x, y=train.y, groups=train.groups)
    with pytest.raises(AssertionError, match=r"read data\.groups"):
        _ = guarded.groups
    assert same_weights(a, fit(name, guarded))


def spy_on_modes(monkeypatch, attack: str) -> list[tuple[str, bool]]:
    """Wrap ``adversarial.<attack>`` to record the model's train flag at each call."""
    calls: list[tuple[str, bool]] = []
    original = getattr(adversarial, attack)

    def spy(model, *args, **kwargs):
        calls.append((attack, model.training))
        out = original(model, *args, **kwargs)
        assert calls[-1][1] == model.training  # the attack leaves the mode alone
        return out

    monkeypatch.setattr(adversarial, attack, spy)
    return calls


def test_attacks_run_in_the_mode_of_each_reference(monkeypatch, train):
    """Madry / Rice / Wong attack in train mode; TRADES in eval mode; the guard in eval."""
    pgd_calls = spy_on_modes(monkeypatch, "pgd")
    fgsm_calls = spy_on_modes(monkeypatch, "fgsm")
    steps = -(-len(train) // 64)
    fit("adv-pgd", train)
    assert pgd_calls == [("pgd", True)] * steps
    pgd_calls.clear()
    fit("adv-fgsm-rs", train, epochs=2)
    assert fgsm_calls == [("fgsm", True)] * (2 * steps)
    assert pgd_calls == [("pgd", False)] * 2  # one guard reading per epoch (64 rows: 1 batch)
    pgd_calls.clear()
    model = fresh("trades")
    seen: list[bool] = []
    model.register_forward_pre_hook(lambda module, _: seen.append(module.training))
    SPECS["trades"].factory(model, train, seed=0, **FAST["trades"])
    assert pgd_calls == [("pgd", False)] * steps
    # per step: the clean distribution and 3 attack steps in eval, then x and x' in train
    assert seen == ([False] * 4 + [True] * 2) * steps


# --- PGD training -------------------------------------------------------------------------


def test_pgd_training_minimises_the_loss_on_the_last_pgd_iterate(monkeypatch, train):
    """The step's loss is the cross-entropy of ``pgd(..., keep="last")`` with a fresh seed
    per step (a revisited image gets a new random start)."""
    seen: list[dict] = []
    original = adversarial.pgd

    def spy(model, x, y, eps, **kwargs):
        seen.append(kwargs)
        return original(model, x, y, eps, **kwargs)

    monkeypatch.setattr(adversarial, "pgd", spy)
    fit("adv-pgd", train, epochs=2, eps=0.2, step_size=0.05)
    assert all(k["keep"] == "last" and k["steps"] == 3 and k["step_size"] == 0.05 for k in seen)
    assert all(k["random_start"] for k in seen)
    assert len({k["seed"] for k in seen}) == len(seen)


# --- FGSM-RS and its guard ----------------------------------------------------------------


def test_guard_records_a_finite_accuracy_per_epoch(train):
    model = fit("adv-fgsm-rs", train, epochs=2, guard_drop=1.0)  # can never stop
    record = getattr(model, GUARD)
    assert record.shape == (2,) and torch.isfinite(record).all()
    assert ((record >= 0) & (record <= 1)).all()
    assert int(getattr(model, STOP)) == -1
    # the last reading is the final model's PGD robust accuracy on the guard's rows
    rows = guard_subset(len(train), 64, 0)
    assert len(rows) == 64 and torch.equal(rows, guard_subset(len(train), 64, 0))
    again = guard_accuracy(
        model,
        train.x[rows],
        train.y[rows],
        0.3,
        norm="linf",
        steps=3,
        seed=stream_seed(0, adversarial._GUARD_STREAM),
    )
    assert not model.training  # the guard gave the mode back
    assert record[-1].item() == pytest.approx(again, abs=1e-6)


def test_guard_accuracy_is_zero_for_unbounded_pgd_and_keeps_the_mode(train):
    torch.manual_seed(0)
    model = build_seed_cnn(10, (1, 28, 28)).train()
    x, y = train.x[:32], train.y[:32]
    assert guard_accuracy(model, x, y, 1.0, norm="linf", steps=10, seed=0) == 0.0
    assert model.training


def scripted_guard(monkeypatch, readings: list[float]) -> None:
    values = iter(readings)
    monkeypatch.setattr(adversarial, "guard_accuracy", lambda *args, **kwargs: next(values))


def test_a_collapse_stops_training_and_brings_back_the_last_good_weights(monkeypatch, train):
    """Wong et al.'s rule: stop when the reading falls more than 0.2 below the previous
    epoch's; 0.5 -> 0.35 (-0.15) goes on, 0.35 -> 0.1 (-0.25) stops at epoch 2 with the
    weights of epoch 1."""
    scripted_guard(monkeypatch, [0.5, 0.35, 0.1, 0.9])
    stopped = fit("adv-fgsm-rs", train, epochs=4)
    assert int(getattr(stopped, STOP)) == 2 and not stopped.training
    assert getattr(stopped, GUARD).tolist() == pytest.approx([0.5, 0.35, 0.1, NOT_MEASURED])

    scripted_guard(monkeypatch, [0.5, 0.35])
    two_epochs = fit("adv-fgsm-rs", train, epochs=2)
    assert same_parameters(stopped, two_epochs)

    scripted_guard(monkeypatch, [0.5, 0.35, 0.1, 0.9])
    unguarded = fit("adv-fgsm-rs", train, epochs=4, early_stop=False)
    assert int(getattr(unguarded, STOP)) == -1
    assert getattr(unguarded, GUARD).tolist() == pytest.approx([0.5, 0.35, 0.1, 0.9])
    assert not same_parameters(unguarded, two_epochs)

    scripted_guard(monkeypatch, [0.5, 0.35, 0.1])
    lenient = fit("adv-fgsm-rs", train, epochs=3, guard_drop=0.3)  # -0.25 is within 0.3
    assert int(getattr(lenient, STOP)) == -1


def test_fgsm_rs_takes_one_step_of_1_25_eps_from_a_fresh_random_start(monkeypatch, train):
    seen: list[tuple[float, torch.Tensor]] = []
    original = adversarial.fgsm

    def spy(model, x, y, eps, *, init, step_size, **kwargs):
        seen.append((step_size, init))
        return original(model, x, y, eps, init=init, step_size=step_size, **kwargs)

    monkeypatch.setattr(adversarial, "fgsm", spy)
    scripted_guard(monkeypatch, [0.5, 0.5])
    fit("adv-fgsm-rs", train, epochs=2, eps=0.2)
    assert all(step == pytest.approx(0.25) for step, _ in seen)
    starts = torch.cat([init.flatten() for _, init in seen])
    assert starts.abs().max() <= 0.2 + 1e-6 and starts.max() > 0.19  # uniform in the ball
    assert not torch.equal(seen[0][1][:8], seen[len(seen) // 2][1][:8])


def test_prepare_rejects_a_record_of_another_length(train):
    model = fresh("adv-fgsm-rs", epochs=3)
    with pytest.raises(ValueError, match="prepare with the same params"):
        SPECS["adv-fgsm-rs"].factory(model, train, seed=0, epochs=2)


def test_cached_weights_load_into_the_prepared_architecture(train):
    trained = fit("adv-fgsm-rs", train, epochs=2, guard_drop=1.0)
    buffer = io.BytesIO()
    torch.save(trained.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    params = {**SPECS["adv-fgsm-rs"].params, **FAST["adv-fgsm-rs"], "epochs": 2}
    loaded = fresh("adv-fgsm-rs", **params)
    loaded.load_state_dict(state)  # strict: the same keys and shapes
    assert same_weights(loaded.eval(), trained)
    assert torch.equal(getattr(loaded, GUARD), getattr(trained, GUARD))
    torch.manual_seed(123)
    with pytest.raises(RuntimeError, match="Unexpected key"):
        build_seed_cnn(10, (1, 28, 28)).load_state_dict(state)  # why prepare is needed
    for name in ("adv-pgd", "trades"):  # no extra state: the bare model loads them
        bare = build_seed_cnn(10, (1, 28, 28))
        bare.load_state_dict(fit(name, train).state_dict())


def test_the_record_travels_with_the_model_and_breaks_no_evaluator(train, mnist):
    model = fit("adv-fgsm-rs", train, epochs=1)
    assert getattr(model.to(torch.float64), GUARD).dtype == torch.float64
    assert getattr(model, STOP).dtype == torch.int64
    model = model.to(torch.float32)
    assert randomisable_layers(model) == randomisable_layers(build_seed_cnn(10, (1, 28, 28)))
    explain = Registry.load().get("explainer", "gradient").factory
    x = mnist.test.x[:4]
    maps = explain(model, x, model(x).argmax(1))
    assert maps.shape[0] == 4 and torch.isfinite(maps).all()


# --- TRADES -------------------------------------------------------------------------------


def test_trades_loss_is_the_references_kl_sum_over_the_batch():
    generator = torch.Generator().manual_seed(0)
    clean, adv = torch.randn(5, 4, generator=generator), torch.randn(5, 4, generator=generator)
    y = torch.tensor([0, 1, 2, 3, 0])
    reference = nn.KLDivLoss(reduction="sum")(
        nn.functional.log_softmax(adv, dim=1), nn.functional.softmax(clean, dim=1)
    )
    want = nn.functional.cross_entropy(clean, y) + 6.0 * reference / 5
    assert trades_loss(clean, adv, y, 6.0).item() == pytest.approx(want.item(), rel=1e-6)
    assert trades_loss(clean, clean, y, 6.0).item() == pytest.approx(
        nn.functional.cross_entropy(clean, y).item(), abs=1e-6
    )  # KL(p || p) = 0
    p, q = nn.functional.softmax(clean, dim=1), nn.functional.softmax(adv, dim=1)
    by_hand = (p * (p.log() - q.log())).sum(dim=1)
    assert torch.allclose(kl_per_sample(q.log(), p), by_hand, atol=1e-6)


def test_trades_with_beta_zero_is_erm_on_the_same_batches(train):
    """No dropout (an extra train-mode forward pass would draw other masks): the KL term
    times 0 adds exact zeros to every gradient, so the weights are ERM's bit for bit."""
    torch.manual_seed(123)
    erm = train_erm(
        build_seed_cnn(10, (1, 28, 28), dropout=0.0),
        train,
        seed=0,
        **{**asdict(ADVERSARIAL_TRAINING), "epochs": 2},
    )
    torch.manual_seed(123)
    trades = adversarial.train_trades(
        build_seed_cnn(10, (1, 28, 28), dropout=0.0), train, seed=0, beta=0.0, steps=2, epochs=2
    )
    assert same_weights(erm, trades)
    torch.manual_seed(123)
    robust = adversarial.train_trades(
        build_seed_cnn(10, (1, 28, 28), dropout=0.0), train, seed=0, beta=6.0, steps=2, epochs=2
    )
    assert not same_weights(erm, robust)


def reference_perturb_kl(model, x, init, eps, step_size, steps):
    """``trades_loss``'s Linf loop of github.com/yaodongyu/TRADES, with the start cut to the
    box (our documented deviation)."""
    criterion_kl = nn.KLDivLoss(reduction="sum")
    x_adv = (x + init).clamp(0.0, 1.0)
    for _ in range(steps):
        x_adv.requires_grad_()
        with torch.enable_grad():
            loss_kl = criterion_kl(
                nn.functional.log_softmax(model(x_adv), dim=1),
                nn.functional.softmax(model(x), dim=1),
            )
        grad = torch.autograd.grad(loss_kl, [x_adv])[0]
        x_adv = x_adv.detach() + step_size * torch.sign(grad.detach())
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps)
        x_adv = torch.clamp(x_adv, 0.0, 1.0)
    return x_adv


def test_trades_example_is_the_reference_loop_in_eval_mode(mnist):
    torch.manual_seed(0)
    model = build_seed_cnn(10, (1, 28, 28)).train()
    x = mnist.test.x[:16]
    init = 0.001 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    ours = trades_example(model, x, 0.3, steps=5, step_size=0.05, init=init)
    assert model.training  # eval mode inside, restored
    with torch.no_grad():
        model.eval()
        want = reference_perturb_kl(model, x, init, 0.3, 0.05, 5)
        model.train()
    assert (ours - x).abs().max() <= 0.3 + 1e-6 and ours.min() >= 0 and ours.max() <= 1
    agree = ((ours - want).abs() <= 1e-5).float().mean().item()
    assert agree >= 0.999  # a pixel whose gradient is within rounding of 0 may step the other way


# --- robustness ---------------------------------------------------------------------------

ROBUST_EPS = 0.1


@pytest.mark.slow
def test_each_procedure_beats_erm_on_pgd_robust_accuracy():
    """Same data, epochs, optimiser and initial weights; PGD (20 steps, Linf 0.1) on held-out
    images. No dropout, so the short runs are not dominated by its noise."""
    data = load_mnist(train_limit=1000, test_limit=200)
    budget = {"epochs": 6, "lr": 0.003, "batch_size": 32}
    attack = {"eps": ROBUST_EPS, "steps": 5}

    def robust(name: str | None) -> float:
        torch.manual_seed(0)
        model = build_seed_cnn(10, (1, 28, 28), dropout=0.0)
        if name is None:
            model = train_erm(model, data.train, seed=0, optimizer="adam", **budget)
        else:
            params = {k: v for k, v in attack.items() if k in SPECS[name].params}
            if SPECS[name].prepare is not None:
                model = SPECS[name].prepare(model, 10, **budget)
            model = SPECS[name].factory(model, data.train, seed=0, **budget, **params)
        x, y = data.test.x, data.test.y
        return guard_accuracy(model, x, y, ROBUST_EPS, norm="linf", steps=20, seed=1)

    erm = robust(None)
    for name in NAMES:
        assert robust(name) >= erm + 0.05, name
