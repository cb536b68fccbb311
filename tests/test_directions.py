"""Tests of directions: normalization, ignore rules, dir types, seeds, interpolation, PCA, files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import RESNET_MODEL, RESNET_MODEL_KWARGS
from torch import nn

from landscape.core.directions import (
    direction_keys,
    directions_from_tensors,
    interpolation_directions,
    pca_directions,
    point_state,
    random_directions,
)
from landscape.errors import LandscapeError
from landscape.io.checkpoint import build_model, load_checkpoint
from landscape.jobs.train import snapshot_dir
from landscape.models import create_model


def _resnet() -> nn.Module:
    torch.manual_seed(0)
    net = create_model(RESNET_MODEL, in_channels=1, **RESNET_MODEL_KWARGS).eval()
    with torch.no_grad():  # non-trivial BN statistics and biases, as in a trained model
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
        net.linear.bias.uniform_(-0.5, 0.5)
    return net


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    return _resnet()


def _slice_norms(t: torch.Tensor) -> torch.Tensor:
    """Frobenius norm of each output-channel slice, computed with the plain definition."""
    return torch.stack([torch.sqrt((t[i].double() ** 2).sum()) for i in range(t.shape[0])])


# ----------------------------------------------------------------------------- normalization


def test_filter_norm_gives_each_filter_the_norm_of_its_weights(resnet: nn.Module) -> None:
    d = random_directions(resnet, seed=1, norm="filter")
    params = dict(resnet.named_parameters())
    multi = [k for k, w in params.items() if w.dim() >= 2]
    assert {"conv1.weight", "linear.weight", "layer2.0.shortcut.0.weight"} <= set(multi)
    for axis in (d.x, d.y):
        for k in multi:
            torch.testing.assert_close(
                _slice_norms(axis[k]), _slice_norms(params[k].detach()), rtol=1e-5, atol=1e-7
            )


def test_normalizations_are_the_papers_formulas_on_the_same_gaussian_draws(resnet: nn.Module) -> None:
    """Same seed, same Gaussian draws: filter/layer/weight are exact rescalings of `none`."""
    raw = random_directions(resnet, seed=5, norm="none", two_d=False).x
    by_norm = {n: random_directions(resnet, seed=5, norm=n, two_d=False).x for n in ("filter", "layer", "weight")}
    for k, w in resnet.named_parameters():
        w = w.detach()
        if w.dim() < 2:
            continue
        g = raw[k]
        assert abs(float(g.std()) - 1.0) < 0.5  # an unscaled standard Gaussian
        scale = _slice_norms(w) / (_slice_norms(g) + 1e-10)
        expected = g.double() * scale.view(-1, *([1] * (g.dim() - 1)))
        torch.testing.assert_close(by_norm["filter"][k].double(), expected, rtol=1e-5, atol=1e-7)
        layer = g.double() * (w.double().norm() / (g.double().norm() + 1e-10))
        torch.testing.assert_close(by_norm["layer"][k].double(), layer, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(by_norm["layer"][k].double().norm(), w.double().norm(), rtol=1e-5, atol=0)
        torch.testing.assert_close(by_norm["weight"][k], g * w, rtol=1e-6, atol=0)


def test_biasbn_zeroes_every_1d_entry_and_none_sets_it_to_the_weights(resnet: nn.Module) -> None:
    params = dict(resnet.named_parameters())
    one_d = [k for k, w in params.items() if w.dim() == 1]
    assert {"bn1.weight", "bn1.bias", "linear.bias"} <= set(one_d)
    zeroed = random_directions(resnet, seed=2, ignore="biasbn")
    kept = random_directions(resnet, seed=2, ignore="none")
    for k in one_d:
        for axis in (zeroed.x, zeroed.y):
            assert torch.count_nonzero(axis[k]) == 0, k
        for axis in (kept.x, kept.y):
            torch.testing.assert_close(axis[k], params[k].detach(), rtol=0, atol=0)
    # the ignore rule leaves the multi-dimensional tensors alone
    torch.testing.assert_close(zeroed.x["conv1.weight"], kept.x["conv1.weight"], rtol=0, atol=0)


def test_states_include_bn_statistics_and_exclude_the_batch_counter(resnet: nn.Module) -> None:
    state = resnet.state_dict()
    keys = direction_keys(resnet, "states")
    assert "bn1.running_mean" in keys and "layer3.0.bn2.running_var" in keys
    assert not any(k.endswith("num_batches_tracked") for k in keys)
    assert set(keys) == {k for k in state if not k.endswith("num_batches_tracked")}
    assert direction_keys(resnet, "weights") == [k for k, _ in resnet.named_parameters()]
    d = random_directions(resnet, seed=3, dir_type="states", ignore="none")
    assert list(d.x) == keys
    for k in ("bn1.running_mean", "layer2.0.bn1.running_var"):
        torch.testing.assert_close(d.x[k], state[k], rtol=0, atol=0)
    zeroed = random_directions(resnet, seed=3, dir_type="states", ignore="biasbn")
    assert torch.count_nonzero(zeroed.x["bn1.running_var"]) == 0
    torch.testing.assert_close(
        _slice_norms(zeroed.x["layer1.0.conv1.weight"]), _slice_norms(state["layer1.0.conv1.weight"]),
        rtol=1e-5, atol=1e-7,
    )


def test_bad_choices_are_refused(resnet: nn.Module) -> None:
    for kwargs, fragment in (
        ({"norm": "dfilter"}, "--norm"),
        ({"ignore": "bn"}, "--ignore"),
        ({"dir_type": "buffers"}, "--dir-type"),
    ):
        with pytest.raises(LandscapeError, match=fragment):
            random_directions(resnet, seed=0, **kwargs)


# ----------------------------------------------------------------------------- seeds


def test_same_seed_same_directions_other_seed_other_directions(resnet: nn.Module) -> None:
    a = random_directions(resnet, seed=7)
    b = random_directions(_resnet(), seed=7)  # another instance with the same weights
    c = random_directions(resnet, seed=8)
    for k in a.x:
        torch.testing.assert_close(a.x[k], b.x[k], rtol=0, atol=0)
        torch.testing.assert_close(a.y[k], b.y[k], rtol=0, atol=0)
    assert a.seed == 7 and a.meta()["seed"] == 7
    assert not torch.equal(a.x["conv1.weight"], c.x["conv1.weight"])
    assert not torch.equal(a.y["linear.weight"], c.y["linear.weight"])
    # x and y are independent draws
    assert not torch.equal(a.x["conv1.weight"], a.y["conv1.weight"])


def test_seeding_does_not_touch_the_global_generator(resnet: nn.Module) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    random_directions(resnet, seed=4)
    assert torch.equal(torch.rand(3), expected)


def test_same_dir_gives_y_equal_to_x(resnet: nn.Module) -> None:
    d = random_directions(resnet, seed=9, same_dir=True)
    for k in d.x:
        torch.testing.assert_close(d.y[k], d.x[k], rtol=0, atol=0)
    assert d.meta()["same_dir"] is True
    one = random_directions(resnet, seed=9, two_d=False)
    assert one.y is None and one.ndim == 1
    for k in d.x:
        torch.testing.assert_close(one.x[k], d.x[k], rtol=0, atol=0)


# ----------------------------------------------------------------------------- interpolation, PCA


def test_interpolation_directions_are_checkpoint_differences(tiny_resnet_ckpt) -> None:
    snaps = snapshot_dir(tiny_resnet_ckpt)
    final = load_checkpoint(tiny_resnet_ckpt)
    s0 = load_checkpoint(snaps / "epoch_0000.pt").state_dict
    s1 = load_checkpoint(snaps / "epoch_0001.pt").state_dict
    model = build_model(final)
    d = interpolation_directions(model, s0, s1, dir_type="states")
    assert d.kind == "plane" and d.ndim == 2
    keys = direction_keys(model, "states")
    assert list(d.x) == keys
    for k in keys:
        torch.testing.assert_close(d.x[k], s0[k] - final.state_dict[k], rtol=0, atol=0)
        torch.testing.assert_close(d.y[k], s1[k] - final.state_dict[k], rtol=0, atol=0)
    # the point at (1, 0) is checkpoint 2 itself, BN statistics included
    at = point_state(final.state_dict, d, 1.0, 0.0)
    for k in keys:
        torch.testing.assert_close(at[k], s0[k], rtol=1e-6, atol=1e-6)


def test_interpolation_refuses_a_checkpoint_of_another_shape(tiny_resnet_ckpt, tiny_ckpt) -> None:
    model = build_model(load_checkpoint(tiny_resnet_ckpt))
    other = load_checkpoint(tiny_ckpt).state_dict
    with pytest.raises(LandscapeError, match="--ckpt2 lacks"):
        interpolation_directions(model, other)


def test_pca_matches_sklearn_and_components_are_orthonormal(tiny_traj_ckpt) -> None:
    from sklearn.decomposition import PCA

    final = load_checkpoint(tiny_traj_ckpt)
    model = build_model(final)
    paths = sorted(snapshot_dir(tiny_traj_ckpt).glob("epoch_*.pt"))
    assert len(paths) == 4
    snaps = [load_checkpoint(p).state_dict for p in paths]
    d = pca_directions(model, snaps, ignore="biasbn", epochs=[0, 1, 2, 3])
    keys = direction_keys(model, "weights")

    def flat(s: dict) -> np.ndarray:  # biases zeroed (ignore=biasbn), float64
        return np.concatenate(
            [s[k].double().flatten().numpy() * (s[k].dim() > 1) for k in keys]
        )

    rows = np.stack([flat(s) - flat(final.state_dict) for s in snaps])
    ref = PCA(n_components=2).fit(rows)
    np.testing.assert_allclose(d.extra["explained_variance_ratio"], ref.explained_variance_ratio_, rtol=1e-6)
    assert 0 < sum(d.extra["explained_variance_ratio"]) <= 1 + 1e-9
    comps = np.stack([np.concatenate([v[k].double().flatten().numpy() for k in keys]) for v in (d.x, d.y)])
    np.testing.assert_allclose(comps @ comps.T, np.eye(2), atol=1e-5)
    for mine, theirs in zip(comps, ref.components_):
        assert abs(abs(mine @ theirs) - 1) < 1e-5  # the same axis, up to sign
    # biases and other 1-D entries are zero in the components
    assert all(torch.count_nonzero(d.x[k]) == 0 for k in keys if d.x[k].dim() == 1)
    # the trajectory is the projection of (snapshot - final) onto the components
    np.testing.assert_allclose(d.trajectory["x"], rows @ comps[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(d.trajectory["y"], rows @ comps[1], rtol=1e-4, atol=1e-6)
    assert list(d.trajectory["epochs"]) == [0, 1, 2, 3]
    assert d.trajectory["x"][-1] == pytest.approx(0.0, abs=1e-9)  # the final model is the origin


def test_pca_needs_two_snapshots(tiny_traj_ckpt) -> None:
    model = build_model(load_checkpoint(tiny_traj_ckpt))
    with pytest.raises(LandscapeError, match="--save-every"):
        pca_directions(model, [model.state_dict()])


# ----------------------------------------------------------------------------- from tensors


def test_directions_from_tensors_by_key_and_by_paper_order(resnet: nn.Module) -> None:
    d = random_directions(resnet, seed=1)
    by_key = directions_from_tensors(resnet, d.x, d.y, "mine.h5", d.meta())
    params = [t.clone() for t in d.x.values()]
    by_order = directions_from_tensors(resnet, params, [t.clone() for t in d.y.values()], "paper.h5")
    for k in d.x:
        assert torch.equal(by_key.x[k], d.x[k]) and torch.equal(by_order.x[k], d.x[k])
        assert torch.equal(by_order.y[k], d.y[k])
    assert by_key.seed == 1 and by_key.norm == "filter"
    assert by_order.dir_type == "weights"


def test_paper_states_file_with_batch_counters_is_matched_by_order(resnet: nn.Module) -> None:
    """The paper's `states` files hold one tensor per state_dict() entry, counters included."""
    state = resnet.state_dict()
    tensors = [torch.randn(v.shape) if v.is_floating_point() else v.clone() for v in state.values()]
    d = directions_from_tensors(resnet, tensors, None, "paper_states.h5")
    assert d.dir_type == "states"
    assert list(d.x) == direction_keys(resnet, "states")
    for (k, _), t in zip(state.items(), tensors):
        if k in d.x:
            assert torch.equal(d.x[k], t)


def test_directions_from_tensors_that_do_not_match(resnet: nn.Module, tiny_ckpt) -> None:
    d = random_directions(resnet, seed=1)
    other = build_model(load_checkpoint(tiny_ckpt))
    with pytest.raises(LandscapeError, match="does not match the model"):
        directions_from_tensors(other, d.x, d.y, "resnet.h5", {"dir_type": "weights"})
    with pytest.raises(LandscapeError, match="has 3 tensors in x"):
        directions_from_tensors(other, list(d.x.values())[:3], None, "paper.h5")
    wrong = [torch.zeros(2, 2) for _ in other.parameters()]
    with pytest.raises(LandscapeError, match="shape"):
        directions_from_tensors(other, wrong, None, "paper.h5")


def test_point_state_moves_covered_keys_only(resnet: nn.Module) -> None:
    state = resnet.state_dict()
    d = random_directions(resnet, seed=1)
    at = point_state(state, d, 0.25, -2.0)
    for k, v in state.items():
        if k in d.x:
            torch.testing.assert_close(at[k], v + 0.25 * d.x[k] - 2.0 * d.y[k], rtol=0, atol=0)
        else:
            assert torch.equal(at[k], v)
    assert at["bn1.running_mean"].data_ptr() != state["bn1.running_mean"].data_ptr()
