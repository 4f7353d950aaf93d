"""Debiasers ``augment``, ``padain``, ``mtl-heads``, ``reweight``, ``resample`` and ``group-dro``.

Each one trains the seed CNN for one epoch on 300 real MNIST images (well under a second) and
must return a deterministic model in eval mode with finite logits; the pieces that carry the
method (the batch augmentation, the PAdaIN op and its hooks, the multi-head loss and contract,
the inverse-frequency weights, the exponentiated-gradient update of group DRO) are checked
against hand-computed values or the reference library (torchvision, ``nn.KLDivLoss``).
"""

from __future__ import annotations

import copy
import inspect
import math
import warnings
from dataclasses import asdict

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as tvf

from benchmark.kit.training import TRAINING, Batch, train_loop
from benchmark.specs import DebiaserSpec, Split
from plugins.datasets.mnist import load_mnist
from plugins.debiasers import augment, group_dro, mtl_heads, padain, resample, reweight
from plugins.debiasers.erm import train_erm
from plugins.models.seed_cnn import build_seed_cnn
from tests.test_debiasers_unsupervised import GroupsForbidden

MODULES = {
    "augment": augment,
    "padain": padain,
    "mtl-heads": mtl_heads,
    "reweight": reweight,
    "resample": resample,
    "group-dro": group_dro,
}
SUPERVISED = {"reweight", "resample", "group-dro"}
SPECS = {spec.name: spec for module in MODULES.values() for spec in module.specs()}


@pytest.fixture(scope="module")
def train() -> Split:
    """300 MNIST images with a synthetic binary group attribute (seeded)."""
    split = load_mnist(train_limit=300, test_limit=100).train
    groups = torch.randint(0, 2, (len(split),), generator=torch.Generator().manual_seed(0))
    return Split(x=split.x, y=split.y, groups=groups)


def fresh_model(spec: DebiaserSpec, params: dict | None = None) -> nn.Module:
    """The seed CNN with fixed initial weights, prepared as the runner would."""
    torch.manual_seed(123)
    model = build_seed_cnn(10, (1, 28, 28))
    if spec.prepare is not None:
        model = spec.prepare(model, 10, **{**spec.params, **(params or {})})
    return model


def fit(name: str, data: Split, seed: int = 0, **params) -> nn.Module:
    spec = SPECS[name]
    return spec.factory(fresh_model(spec, params), data, seed=seed, **{"epochs": 1, **params})


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------------------------------------
# Common contract


@pytest.mark.parametrize("name", MODULES)
def test_spec_defaults_are_the_factory_defaults(name):
    spec = SPECS[name]
    assert isinstance(spec, DebiaserSpec) and spec.name == name and spec.version == "1"
    assert spec.description and (spec.factory.__doc__ or "")
    signature = inspect.signature(spec.factory).parameters
    own = {
        key: p.default
        for key, p in signature.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and key != "seed"
    }
    # the shared training parameters are stated once, by the spec, and taken as **training
    assert spec.training == TRAINING and not set(own) & set(asdict(TRAINING))
    assert signature["training"].kind is inspect.Parameter.VAR_KEYWORD
    assert dict(spec.params) == {**own, **asdict(TRAINING)}
    if name in SUPERVISED:
        assert spec.requires == frozenset({"groups"})
    else:
        assert "groups" not in spec.requires
    # mtl-heads swaps the model's final linear layer for its heads
    assert ("linear-head" in spec.requires) == (name == "mtl-heads")
    assert (spec.prepare is not None) == (name == "mtl-heads")


@pytest.mark.parametrize("name", ["augment", "reweight"])
def test_a_direct_call_trains_with_the_spec_defaults(name, train):
    # what a suite gets (the spec's params) is what a direct call without them gets
    spelled_out = {**SPECS[name].params, "epochs": 1}
    assert same_weights(fit(name, train), fit(name, train, **spelled_out))


@pytest.mark.parametrize("name", MODULES)
def test_trains_one_epoch_to_an_eval_model_with_finite_logits(name, train):
    model = fit(name, train)
    assert not model.training
    with torch.no_grad():
        logits = model(train.x[:17])
    assert logits.shape == (17, 10) and torch.isfinite(logits).all()


@pytest.mark.parametrize("name", MODULES)
def test_same_seed_same_weights(name, train):
    first = fit(name, train, seed=3)
    assert same_weights(first, fit(name, train, seed=3))
    assert not same_weights(first, fit(name, train, seed=4))


@pytest.mark.parametrize("name", sorted(SUPERVISED))
def test_supervised_debiasers_refuse_a_split_without_groups(name, train):
    no_groups = Split(x=train.x, y=train.y)
    with pytest.raises(ValueError, match=rf"'{name}' is supervised.*group labels"):
        fit(name, no_groups)


@pytest.mark.parametrize("name", ["augment", "padain", "mtl-heads"])
def test_unsupervised_debiasers_never_read_groups(name, train):
    assert not fit(name, GroupsForbidden(x=train.x, y=train.y)).training


# ------------------------------------------------------------------------------------------
# augment


def test_flip_with_probability_one_and_no_rotation_is_an_exact_horizontal_flip():
    x = torch.rand(5, 3, 7, 9)
    generator = torch.Generator().manual_seed(0)
    assert torch.equal(augment.augment_batch(x, generator, flip_p=1.0, degrees=0.0), x.flip(-1))
    assert torch.equal(augment.augment_batch(x, generator, flip_p=0.0, degrees=0.0), x)


def test_rotation_matches_torchvision_and_rot90():
    torch.manual_seed(0)
    x = torch.rand(4, 3, 28, 28)
    angles = torch.tensor([90.0, 10.0, -7.3, 45.0])
    out = augment.rotate_batch(x, angles)
    assert torch.equal(out[0], torch.rot90(x[0], 1, dims=(-2, -1)))  # counter-clockwise
    for i, angle in enumerate(angles.tolist()):
        reference = tvf.rotate(x[i], angle, interpolation=InterpolationMode.NEAREST)
        assert torch.equal(out[i], reference)


def test_augment_batch_draws_flip_then_angle_per_image_from_the_generator():
    x = torch.rand(6, 1, 12, 12)
    out = augment.augment_batch(x, torch.Generator().manual_seed(7), flip_p=0.5, degrees=10.0)
    # Replay the draws by hand: one flip coin per image, then one angle per image.
    replay = torch.Generator().manual_seed(7)
    flips = torch.rand(6, generator=replay) < 0.5
    angles = (torch.rand(6, generator=replay) * 2 - 1) * 10.0
    assert 0 < int(flips.sum()) < 6 and angles.abs().max() <= 10.0
    for i in range(6):
        image = x[i].flip(-1) if flips[i] else x[i]
        expected = tvf.rotate(image, angles[i].item(), interpolation=InterpolationMode.NEAREST)
        assert torch.equal(out[i], expected)


def test_augment_rejects_bad_parameters(train):
    with pytest.raises(ValueError, match="flip_p"):
        fit("augment", train, flip_p=1.5)
    with pytest.raises(ValueError, match="degrees"):
        fit("augment", train, degrees=-1.0)


# ------------------------------------------------------------------------------------------
# padain


def test_padain_with_p_one_gives_each_sample_its_partners_channel_statistics():
    torch.manual_seed(0)
    # per-channel scales in [0.5, 3.5] and shifts: eps (1e-5) is negligible against these stds
    scale = 0.5 + 3 * torch.rand(6, 4, 1, 1)
    x = torch.randn(6, 4, 5, 5) * scale + torch.randn(6, 4, 1, 1) * 2
    out = padain.maybe_permute(x, 1.0, torch.Generator().manual_seed(1))
    replay = torch.Generator().manual_seed(1)
    assert torch.rand(1, generator=replay).item() < 1.0
    partner = torch.randperm(6, generator=replay)
    assert not torch.equal(partner, torch.arange(6))
    mean, std = out.flatten(2).mean(2), out.flatten(2).std(2)
    assert torch.allclose(mean, x.flatten(2).mean(2)[partner], atol=1e-5)
    assert torch.allclose(std, x.flatten(2).std(2)[partner], rtol=1e-3)

    # the content stays the sample's own: standardised maps are unchanged
    def standardise(t: torch.Tensor) -> torch.Tensor:
        return (t - t.mean((2, 3), keepdim=True)) / t.std((2, 3), keepdim=True)

    assert torch.allclose(standardise(out), standardise(x), atol=1e-3)


def test_padain_with_p_zero_or_a_1x1_map_is_the_identity():
    x = torch.randn(6, 4, 5, 5)
    assert padain.maybe_permute(x, 0.0, torch.Generator().manual_seed(1)) is x
    x1 = torch.randn(6, 4, 1, 1)
    assert padain.maybe_permute(x1, 1.0, torch.Generator().manual_seed(1)) is x1


def test_permuted_adain_by_hand_on_a_two_sample_batch():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 2, 2)
    b = torch.tensor([10.0, 30.0, 50.0, 70.0]).view(1, 1, 2, 2)
    out = padain.permuted_adain(torch.cat([a, b]), torch.tensor([1, 0]), eps=0.0)
    # b = 20 * a - 10 is an increasing affine map of a, so a with b's mean (40) and std (20x a's)
    # is b itself, and b with a's statistics is a: the output is the swapped batch
    assert torch.allclose(out, torch.cat([b, a]))


def test_padain_hooks_fire_in_training_and_are_removed_afterwards(train):
    untouched = fresh_model(SPECS["padain"])
    model = fresh_model(SPECS["padain"])
    trained = padain.train_padain(model, train, seed=0, p=1.0, epochs=1)
    assert trained is model and not trained.training
    assert trained.state_dict().keys() == untouched.state_dict().keys()
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in trained.modules())
    never = fit("padain", train, p=0.0)
    assert not same_weights(trained, never)  # with p=1 the hooks changed every forward pass
    erm = train_erm(
        fresh_model(SPECS["padain"]), train, seed=0, epochs=1, optimizer="adam", lr=0.001
    )
    assert same_weights(never, erm)  # with p=0 it is exactly ERM


def test_padain_removes_hooks_when_training_fails(train):
    model = fresh_model(SPECS["padain"])
    bad = Split(x=train.x, y=train.y + 100)  # labels out of range: cross_entropy raises
    with pytest.raises((IndexError, RuntimeError)):
        padain.train_padain(model, bad, seed=0, epochs=1)
    assert all(not m._forward_hooks for m in model.modules())


# ------------------------------------------------------------------------------------------
# mtl-heads


def test_prepared_model_keeps_the_multi_head_contract(train):
    spec = SPECS["mtl-heads"]
    model = fresh_model(spec).eval()
    x = train.x[:8]
    with torch.no_grad():
        heads = model.head_logits(x)
        ensemble = model(x)
    assert heads.shape == (3, 8, 10)
    assert torch.allclose(ensemble, heads.mean(0), atol=1e-6)
    assert not torch.allclose(heads[0], heads[1]) and not torch.allclose(heads[1], heads[2])
    layers = model.fc_layers[3].heads
    assert not torch.equal(layers[0].weight, layers[1].weight)
    # paths of the backbone are untouched (CAM target layers still resolve)
    assert isinstance(model.get_submodule("conv_layers.3"), nn.Conv2d)
    clone = copy.deepcopy(model)
    assert clone.head_logits.__self__ is clone
    with torch.no_grad():
        assert torch.equal(clone.head_logits(x), heads)


def test_trained_heads_differ_and_forward_is_their_mean(train):
    model = fit("mtl-heads", train)
    with torch.no_grad():
        heads = model.head_logits(train.x[:32])
        assert torch.allclose(model(train.x[:32]), heads.mean(0), atol=1e-6)
    assert not torch.allclose(heads[0], heads[2])


def test_mtl_loss_by_hand_and_against_the_torch_losses_of_the_source():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 4)
    y = torch.tensor([0, 3, 1, 1, 2])
    onehot = nn.functional.one_hot(y, 4).float()
    ce = nn.functional.cross_entropy(logits[0], y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nn.KLDivLoss's 'mean' reduction warning
        kl = nn.KLDivLoss()(nn.functional.log_softmax(logits[1], 1), onehot)
    l2 = nn.MSELoss()(nn.functional.softmax(logits[2], 1), onehot)
    # with a one-hot target, KL = -log p_y summed, over N * K elements: CE / K
    assert torch.allclose(kl, nn.functional.cross_entropy(logits[1], y) / 4)
    brier = ((nn.functional.softmax(logits[2], 1) - onehot) ** 2).sum() / 20
    assert torch.allclose(l2, brier)
    total = mtl_heads.mtl_loss(logits, y)
    assert torch.allclose(total, ce + kl + l2)
    weighted = mtl_heads.mtl_loss(logits, y, ce_weight=0.5, kl_weight=2.0, l2_weight=0.0)
    assert torch.allclose(weighted, 0.5 * ce + 2.0 * kl)
    # a fourth head cycles back to cross-entropy
    four = torch.cat([logits, logits[:1]])
    assert torch.allclose(mtl_heads.mtl_loss(four, y), 2 * ce + kl + l2)


def test_mtl_heads_prepares_an_unprepared_model_and_checks_head_count(train):
    torch.manual_seed(0)
    model = mtl_heads.train_mtl_heads(build_seed_cnn(10, (1, 28, 28)), train, seed=0, epochs=1)
    assert model.head_logits(train.x[:2]).shape == (3, 2, 10)
    with pytest.raises(ValueError, match="3 heads but heads=2"):
        mtl_heads.train_mtl_heads(model, train, seed=0, heads=2, epochs=1)


# ------------------------------------------------------------------------------------------
# reweight


def test_inverse_frequency_weights_by_hand():
    y = torch.tensor([0, 0, 0, 0])
    groups = torch.tensor([1, 1, 1, 0])  # cells with counts 3 and 1
    weights = reweight.inverse_frequency_weights(reweight.cell_ids(y, groups))
    assert torch.allclose(weights, torch.tensor([2 / 3, 2 / 3, 2 / 3, 2.0]))
    assert weights[3] / weights[0] == pytest.approx(3.0) and weights.mean() == pytest.approx(1.0)


def test_cells_are_class_group_pairs_unless_asked_for_groups_alone():
    y = torch.tensor([0, 0, 1, 1, 1, 1])
    groups = torch.tensor([0, 1, 0, 0, 0, 1])
    pairs = reweight.cell_ids(y, groups)
    assert len(set(pairs.tolist())) == 4  # (0,0) (0,1) (1,0) (1,1)
    by_pair = reweight.inverse_frequency_weights(pairs)
    # counts 1, 1, 3, 1 -> w = N / (4 * n) = 1.5, 1.5, 0.5, 1.5
    assert torch.allclose(by_pair, torch.tensor([1.5, 1.5, 0.5, 0.5, 0.5, 1.5]))
    by_group = reweight.inverse_frequency_weights(reweight.cell_ids(y, groups, "group"))
    # group counts 4 and 2 -> w = 6 / (2 * n) = 0.75, 1.5
    assert torch.allclose(by_group, torch.tensor([0.75, 1.5, 0.75, 0.75, 0.75, 1.5]))
    with pytest.raises(ValueError, match="cell must be one of"):
        reweight.cell_ids(y, groups, "colour")


def test_reweight_with_balanced_cells_is_erm(train):
    # one group, so the cells are the classes; balanced classes make every weight exactly 1
    balanced = Split(x=train.x, y=train.y, groups=torch.zeros_like(train.y))
    counts = torch.bincount(train.y)
    assert (counts == counts[0]).all()
    erm = train_erm(
        fresh_model(SPECS["reweight"]), train, seed=0, epochs=1, optimizer="adam", lr=0.001
    )
    weighted = fit("reweight", balanced)
    for key, value in erm.state_dict().items():
        assert torch.allclose(weighted.state_dict()[key], value, atol=1e-5)


# ------------------------------------------------------------------------------------------
# resample


def drawn_rows(data: Split, weights: torch.Tensor | None, epochs: int, seed: int = 0) -> list:
    """The rows the shared loop puts in its batches, epoch after epoch (a linear model)."""
    model = nn.Linear(28 * 28, 10)
    rows: list[torch.Tensor] = []

    def step(batch: Batch) -> torch.Tensor:
        rows.append(batch.index)
        return nn.functional.cross_entropy(model(batch.x.flatten(1)), batch.y)

    train_loop(model, data, step, seed=seed, epochs=epochs, batch_size=32, sampling_weights=weights)
    return rows


def test_sampling_weights_draw_every_cell_equally_often(train):
    # 300 rows in cells of 270 and 30: inverse-frequency sampling draws each cell half the time
    groups = (torch.arange(len(train)) < 30).long()
    data = Split(x=train.x, y=torch.zeros_like(train.y), groups=groups)
    weights = reweight.inverse_frequency_weights(reweight.cell_ids(data.y, groups))
    rows = torch.cat(drawn_rows(data, weights, epochs=40))
    assert len(rows) == 40 * len(train)  # an epoch is still N draws
    share = (groups[rows] == 1).double().mean().item()
    # 12,000 draws, p = 0.5: the standard error is 0.0046, so 0.03 is over six of them
    assert share == pytest.approx(0.5, abs=0.03)
    # without weights every epoch is a permutation: each row exactly once
    for epoch in range(2):
        order = torch.cat(drawn_rows(data, None, epochs=2)[epoch * 10 : epoch * 10 + 10])
        assert torch.equal(order.sort().values, torch.arange(len(train)))


def test_sampling_weights_never_draw_a_zero_weight_row_and_are_checked(train):
    weights = torch.zeros(len(train))
    weights[:5] = 1.0
    rows = torch.cat(drawn_rows(train, weights, epochs=2))
    assert set(rows.tolist()) <= set(range(5))
    assert torch.equal(rows, torch.cat(drawn_rows(train, weights, epochs=2)))  # seeded
    for bad, match in [
        (torch.ones(7), "one weight per training row"),
        (-torch.ones(len(train)), "non-negative"),
        (torch.zeros(len(train)), "not all zero"),
        (torch.full((len(train),), float("nan")), "finite"),
    ]:
        with pytest.raises(ValueError, match=match):
            drawn_rows(train, bad, epochs=1)


def test_resample_with_balanced_cells_trains_on_every_row_equally_often(train):
    # one group and balanced classes: every weight is 1, so the sampler is uniform draws
    balanced = Split(x=train.x, y=train.y, groups=torch.zeros_like(train.y))
    weights = reweight.inverse_frequency_weights(reweight.cell_ids(balanced.y, balanced.groups))
    assert torch.equal(weights, torch.ones(len(train)))
    model = fit("resample", balanced, seed=5)
    assert not model.training
    # the same draws as the shared loop with uniform weights (resample adds nothing else)
    torch.manual_seed(123)
    reference = build_seed_cnn(10, (1, 28, 28))

    def step(batch: Batch) -> torch.Tensor:
        return nn.functional.cross_entropy(reference(batch.x), batch.y)

    train_loop(
        reference,
        balanced,
        step,
        seed=5,
        epochs=1,
        batch_size=64,
        optimizer="adam",
        lr=0.001,
        sampling_weights=torch.ones(len(train)),
    )
    assert same_weights(model, reference.eval())


# ------------------------------------------------------------------------------------------
# group-dro


def test_group_weight_update_by_hand():
    q = torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64)
    loss = torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64)
    new = group_dro.update_group_weights(q, loss, step_size=0.1)
    raw = [0.5 * math.exp(0.1), 0.25 * math.exp(0.2), 0.25]
    assert new.tolist() == pytest.approx([r / sum(raw) for r in raw])


def test_one_group_dro_step_on_a_toy_loss_vector():
    counts = torch.tensor([2, 1, 4])
    objective = group_dro.GroupDROLoss(counts, step_size=0.5)
    losses = torch.tensor([1.0, 3.0, 0.5], requires_grad=True)
    groups = torch.tensor([0, 0, 1])  # group 2 absent from the batch: its loss counts as 0
    value = objective(losses, groups)
    means = np.array([2.0, 0.5, 0.0])
    q = np.exp(0.5 * means) / 3
    q /= q.sum()
    assert objective.q.numpy() == pytest.approx(q)
    assert value.item() == pytest.approx(float(q @ means), rel=1e-6)
    value.backward()  # d/dl_i = q_g / n_g(batch)
    assert losses.grad.tolist() == pytest.approx([q[0] / 2, q[0] / 2, q[1]], rel=1e-6)


def test_generalisation_adjustment_enters_the_weights_only():
    counts = torch.tensor([100, 4])
    objective = group_dro.GroupDROLoss(counts, step_size=1.0, adjustment=2.0)
    losses = torch.tensor([1.0, 1.0])
    value = objective(losses, torch.tensor([0, 1]))
    adjusted = np.array([1.0 + 2.0 / 10.0, 1.0 + 2.0 / 2.0])
    q = np.exp(adjusted) / np.exp(adjusted).sum()
    assert objective.q.numpy() == pytest.approx(q)
    assert value.item() == pytest.approx(1.0)  # sum_g q_g * L_g with both L_g = 1


def test_repeated_steps_on_constant_losses_give_a_softmax_of_the_summed_losses():
    objective = group_dro.GroupDROLoss(torch.tensor([5, 5]), step_size=0.1)
    for _ in range(3):
        objective(torch.tensor([1.0, 2.0]), torch.tensor([0, 1]))
    # q_3 is proportional to exp(0.1 * 3 * L): weight flows to the group with the higher loss
    expected = torch.softmax(torch.tensor([0.3, 0.6], dtype=torch.float64), 0)
    assert torch.allclose(objective.q, expected)


def test_group_dro_rejects_bad_parameters():
    with pytest.raises(ValueError, match="step_size"):
        group_dro.GroupDROLoss(torch.tensor([1, 2]), step_size=-1.0)
    with pytest.raises(ValueError, match="adjustment"):
        group_dro.GroupDROLoss(torch.tensor([1, 2]), adjustment=-1.0)


# ------------------------------------------------------------------------------------------
# On colored MNIST, when that dataset plugin is installed


def test_on_colored_mnist_conflicting_cells_weigh_more_and_both_supervised_debiasers_train():
    colored = pytest.importorskip("plugins.datasets.colored_mnist")
    data = colored.load_colored_mnist(rho=0.9, train_limit=300, test_limit=100).train
    aligned = torch.as_tensor(data.extras["bias_aligned"])
    # 30 images per class: 27 in the class colour, 3 in three other colours (cells of size 1)
    weights = reweight.inverse_frequency_weights(reweight.cell_ids(data.y, data.groups))
    assert torch.allclose(weights[~aligned] / weights[aligned].mean(), torch.tensor(27.0))
    assert weights.mean().item() == pytest.approx(1.0)
    for name in sorted(SUPERVISED):
        spec = SPECS[name]
        torch.manual_seed(0)
        model = spec.factory(build_seed_cnn(10, (3, 28, 28)), data, seed=0, epochs=1)
        with torch.no_grad():
            assert torch.isfinite(model(data.x[:5])).all()
