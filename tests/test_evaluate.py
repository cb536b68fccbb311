"""Tests of the evaluator against an independent plain-PyTorch evaluation, whatever the batching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_compiled_or_rejected, digits_splits, plain_evaluate, plain_reestimate_bn
from torch import nn

from landscape.core.directions import Directions, point_state, random_directions
from landscape.engine.evaluate import PointEvaluator, plan_evaluation
from landscape.errors import LandscapeError
from landscape.io.checkpoint import Checkpoint, build_model, load_checkpoint

CPU = torch.device("cpu")
# uneven sample counts, so that no tested batch size divides them
N_TRAIN, N_TEST = 250, 121
COORDS = np.array(
    [[0.0, 0.0], [0.5, -0.25], [-1.0, 1.0], [0.2, 0.9], [1.0, 1.0], [-0.7, 0.1], [0.3, -0.8], [0.05, 0.6]]
)
# (strategy, points per pass, batch size); None lets the engine choose
VARIANTS = [
    ("sequential", None, None),
    ("sequential", None, 7),
    ("vmap", 1, None),
    ("vmap", 3, 64),
    ("vmap", 7, 512),
    ("vmap", 7, 7),
]


@pytest.fixture(scope="module")
def splits() -> dict:
    s = digits_splits()
    return {"train": (s["train"][0][:N_TRAIN], s["train"][1][:N_TRAIN]),
            "test": (s["test"][0][:N_TEST], s["test"][1][:N_TEST])}


@pytest.fixture(scope="module", params=["mlp", "resnet8"])
def ckpt(request: pytest.FixtureRequest, tiny_ckpt: Path, tiny_resnet_ckpt: Path) -> Checkpoint:
    return load_checkpoint(tiny_ckpt if request.param == "mlp" else tiny_resnet_ckpt)


def _reference(ckpt: Checkpoint, d: Directions, coords: np.ndarray, splits: dict) -> list[dict]:
    return [
        plain_evaluate(ckpt.model, ckpt.model_kwargs, point_state(ckpt.state_dict, d, *c), splits)
        for c in coords
    ]


def _assert_matches(values: dict, refs: list[dict], rtol: float = 1e-5) -> None:
    for i, ref in enumerate(refs):
        for name, want in ref.items():
            got = float(values[name][i])
            assert got == pytest.approx(want, rel=rtol, abs=1e-12), (i, name, got, want)


@pytest.mark.parametrize("dir_type", ["weights", "states"])
def test_values_equal_plain_pytorch_for_every_batching(
    ckpt: Checkpoint, dir_type: str, splits: dict
) -> None:
    model = build_model(ckpt)
    d = random_directions(model, seed=3, dir_type=dir_type, ignore="none" if dir_type == "states" else "biasbn")
    refs = _reference(ckpt, d, COORDS, splits)
    # the test is not vacuous: the points differ from each other
    assert len({round(r["train_loss"], 6) for r in refs}) == len(refs)
    results = []
    for strategy, per_pass, batch in VARIANTS:
        plan = plan_evaluation(model, CPU, len(COORDS), strategy=strategy, points_per_pass=per_pass,
                               batch_size=batch, sample=splits["train"][0])
        assert plan.strategy == strategy
        if per_pass is not None:
            assert plan.points_per_pass == per_pass
        if batch is not None:
            assert plan.batch_size == batch
        values = PointEvaluator(model, d, splits, plan)(COORDS)
        assert set(values) == {"train_loss", "train_acc", "test_loss", "test_acc"}
        _assert_matches(values, refs)
        results.append(values)
    for values in results[1:]:  # and the batchings agree with each other
        for name in values:
            np.testing.assert_allclose(values[name], results[0][name], rtol=2e-6)


def test_engine_choices(tiny_ckpt: Path, tiny_resnet_ckpt: Path, splits: dict) -> None:
    mlp = build_model(load_checkpoint(tiny_ckpt))
    resnet = build_model(load_checkpoint(tiny_resnet_ckpt))
    sample = splits["train"][0]
    plan = plan_evaluation(mlp, CPU, 100, sample=sample)
    assert plan.strategy == "vmap" and plan.points_per_pass > 1
    assert plan_evaluation(mlp, CPU, 3, sample=sample).points_per_pass <= 3
    plan = plan_evaluation(resnet, CPU, 100, sample=sample)
    assert plan.strategy == "sequential" and plan.points_per_pass == 1 and plan.fold_bn
    plan = plan_evaluation(resnet, CPU, 100, bn_mode="recompute", sample=sample)
    assert plan.strategy == "sequential"
    with pytest.raises(LandscapeError, match="sequential"):
        plan_evaluation(resnet, CPU, 100, bn_mode="recompute", strategy="vmap")
    with pytest.raises(LandscapeError, match="--precision"):
        plan_evaluation(resnet, CPU, 100, precision="fp16")


def test_repeated_and_reordered_points_give_the_same_values(ckpt: Checkpoint, splits: dict) -> None:
    """The evaluator restores the centre after each point and never changes the given model."""
    model = build_model(ckpt)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    d = random_directions(model, seed=11, dir_type="states", ignore="none")
    ev = PointEvaluator(model, d, splits)
    first = ev(COORDS)
    again = ev(np.ascontiguousarray(COORDS[::-1]))
    for name in first:
        np.testing.assert_allclose(first[name], again[name][::-1], rtol=1e-7)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_any_numpy_view_of_coordinates_is_accepted(tiny_ckpt: Path, splits: dict) -> None:
    ckpt = load_checkpoint(tiny_ckpt)
    model = build_model(ckpt)
    ev = PointEvaluator(model, random_directions(model, seed=1), splits)
    assert ev.plan.strategy == "vmap"
    reversed_view = COORDS[::-1]
    values = ev(reversed_view)
    np.testing.assert_array_equal(values["train_loss"], ev(COORDS)["train_loss"][::-1])


def test_batchnorm_without_affine_parameters_is_evaluated_exactly() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4, affine=False), nn.ReLU(),
                        nn.Flatten(), nn.Linear(4 * 8 * 8, 10)).eval()
    with torch.no_grad():
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
    x, y = torch.randn(50, 1, 8, 8), torch.randint(0, 10, (50,))
    d = random_directions(net, seed=1)
    values = PointEvaluator(net, d, {"train": (x, y)})(np.array([[0.5, -0.5]]))
    probe = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4, affine=False), nn.ReLU(),
                          nn.Flatten(), nn.Linear(4 * 8 * 8, 10)).eval()
    probe.load_state_dict(point_state(net.state_dict(), d, 0.5, -0.5))
    with torch.no_grad():
        want = float(torch.nn.functional.cross_entropy(probe(x), y))
    assert float(values["train_loss"][0]) == pytest.approx(want, rel=1e-5)


def test_bn_recompute_equals_an_independent_reestimation(tiny_resnet_ckpt: Path, splits: dict) -> None:
    ckpt = load_checkpoint(tiny_resnet_ckpt)
    model = build_model(ckpt)
    d = random_directions(model, seed=3)
    bn_x = splits["train"][0]
    coords = COORDS[[1, 2, 4]]
    plan = plan_evaluation(model, CPU, len(coords), bn_mode="recompute", batch_size=64, sample=bn_x)
    ev = PointEvaluator(model, d, splits, plan, bn_mode="recompute", bn_data=bn_x)
    values = ev(coords)
    for i, c in enumerate(coords):
        at = point_state(ckpt.state_dict, d, *c)
        state = plain_reestimate_bn(ckpt.model, ckpt.model_kwargs, at, bn_x, 64)
        ref = plain_evaluate(ckpt.model, ckpt.model_kwargs, state, splits)
        for name, want in ref.items():
            assert float(values[name][i]) == pytest.approx(want, rel=1e-5), (c, name)
        # and re-estimation matters here: the checkpoint's statistics give another loss
        stale = plain_evaluate(ckpt.model, ckpt.model_kwargs, at, splits)
        assert abs(stale["train_loss"] - ref["train_loss"]) > 1e-3


def test_bn_recompute_needs_training_data(tiny_resnet_ckpt: Path, splits: dict) -> None:
    model = build_model(load_checkpoint(tiny_resnet_ckpt))
    with pytest.raises(LandscapeError, match="training data"):
        PointEvaluator(model, random_directions(model), splits, bn_mode="recompute")


def test_one_direction_and_1d_coordinates(tiny_ckpt: Path, splits: dict) -> None:
    ckpt = load_checkpoint(tiny_ckpt)
    model = build_model(ckpt)
    d = random_directions(model, seed=2, two_d=False)
    coords = np.array([[-1.0], [0.0], [0.7]])
    values = PointEvaluator(model, d, splits)(coords)
    _assert_matches(values, _reference(ckpt, d, coords, splits))


def test_bf16_is_close_to_fp32(tiny_resnet_ckpt: Path, splits: dict) -> None:
    model = build_model(load_checkpoint(tiny_resnet_ckpt))
    d = random_directions(model, seed=3)
    coords = COORDS[:3]
    exact = PointEvaluator(model, d, splits)(coords)
    plan = plan_evaluation(model, CPU, 3, precision="bf16", sample=splits["train"][0])
    rough = PointEvaluator(model, d, splits, plan)(coords)
    np.testing.assert_allclose(rough["train_loss"], exact["train_loss"], rtol=0.05)


def test_compiled_runner_equals_eager_and_is_chosen_only_when_worth_it(
    tiny_resnet_ckpt: Path, splits: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    import landscape.engine.evaluate as ev_module

    ckpt = load_checkpoint(tiny_resnet_ckpt)
    model = build_model(ckpt)
    d = random_directions(model, seed=3)
    coords = np.array([[0.0, 0.0], [0.4, -0.3], [1.0, 1.0]])
    x = splits["train"][0]
    eager = PointEvaluator(model, d, splits, plan_evaluation(model, torch.device("cpu"), 3, sample=x))
    want = eager(coords)
    assert eager.plan.compile is False  # 3 cheap points: compiling would cost more than it saves
    # with any amount of work "worth it", the engine compiles after its first (eager) point
    monkeypatch.setattr(ev_module, "COMPILE_WORTH_SECONDS", 0.0)
    auto = PointEvaluator(model, d, splits, plan_evaluation(model, torch.device("cpu"), 3, sample=x))
    got = auto(coords)
    assert_compiled_or_rejected(auto.plan.compile, auto.plan.reason, "torch.compile")
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5)


def test_compile_off_is_respected_and_a_disagreeing_compiled_model_is_dropped(
    tiny_resnet_ckpt: Path, splits: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    import landscape.engine.evaluate as ev_module

    model = build_model(load_checkpoint(tiny_resnet_ckpt))
    d = random_directions(model, seed=3)
    coords = np.array([[0.0, 0.0], [0.4, -0.3]])
    x = splits["train"][0]
    monkeypatch.setattr(ev_module, "COMPILE_WORTH_SECONDS", 0.0)
    off = PointEvaluator(model, d, splits, plan_evaluation(model, torch.device("cpu"), 2, sample=x, compile="off"))
    want = off(coords)
    assert off.plan.compile is False

    class OffByOnePercent(torch.nn.Module):  # a "compiled" model whose outputs are wrong
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self._orig_mod = inner

        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            return self._orig_mod(inputs) * 1.01

    monkeypatch.setattr(ev_module.torch, "compile", lambda m, **kw: OffByOnePercent(m))
    auto = PointEvaluator(model, d, splits, plan_evaluation(model, torch.device("cpu"), 2, sample=x))
    got = auto(coords)
    assert auto.plan.compile is False and "differs from eager" in auto.plan.reason
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6)
    with pytest.raises(LandscapeError, match="--compile 'maybe'"):
        plan_evaluation(model, torch.device("cpu"), 2, sample=x, compile="maybe")


def test_cpu_batch_size_keeps_the_largest_activation_near_4mb() -> None:
    from landscape.engine.planning import _cache_batch_size
    from landscape.models import create_model

    r20 = create_model("resnet20")
    assert _cache_batch_size(r20, torch.randn(1, 3, 32, 32)) == 64  # 64 KB per image
    assert _cache_batch_size(r20, torch.randn(1, 3, 32, 32), element_bytes=2) == 128  # bf16
    assert _cache_batch_size(create_model("densenet_bc40"), torch.randn(1, 3, 32, 32)) == 16
    assert _cache_batch_size(create_model("resnet20", in_channels=1), torch.randn(1, 1, 8, 8)) == 1024


class _TiedLM(nn.Module):
    """Embedding and output layer sharing one weight (as GPT-2's wte / lm_head), returning a
    dict with the logits and a non-tensor entry (as a cache) or a plain tensor."""

    def __init__(self, plain: bool = False) -> None:
        super().__init__()
        self.emb = nn.Embedding(11, 6)
        self.mid = nn.Linear(6, 6)
        self.head = nn.Linear(6, 11, bias=False)
        self.head.weight = self.emb.weight
        self.plain = plain

    def forward(self, ids: torch.Tensor):  # noqa: ANN201
        logits = self.head(torch.tanh(self.mid(self.emb(ids).mean(1))))
        return logits if self.plain else {"logits": logits, "cache": object()}


@pytest.mark.parametrize("plain, strategy, ppp", [(False, None, None), (True, "vmap", 3), (True, "sequential", None)])
def test_tied_weights_move_once_and_structured_outputs_are_exact(plain: bool, strategy: str | None, ppp: int | None) -> None:
    """A tied tensor is one direction entry (states too) and moves on every plan: the head sees
    the moved embedding (before, the unmoved alias was copied over it); a dict output with a
    non-tensor entry is planned sequentially and scored on its logits."""
    from landscape.core.directions import direction_keys, tied_keys
    from landscape.engine.losses import cross_entropy

    torch.manual_seed(0)
    net = _TiedLM(plain).eval()
    assert tied_keys(net) == {"head.weight": "emb.weight"}
    assert "head.weight" not in direction_keys(net, "states")
    d = random_directions(net, seed=1, dir_type="states", ignore="none")
    assert d.extra["tied"] == {"head.weight": "emb.weight"} and "head.weight" not in d.x
    ids, y = torch.randint(0, 11, (40, 5)), torch.randint(0, 11, (40,))
    plan = plan_evaluation(net, torch.device("cpu"), 4, strategy=strategy, points_per_pass=ppp, sample=ids)
    assert plan.strategy == (strategy or "sequential")
    coords = np.array([[0.0, 0.0], [0.3, -0.2], [-0.5, 0.4], [1.0, 1.0]])
    got = PointEvaluator(net, d, {"train": (ids, y)}, plan)(coords)
    for c, value in zip(coords, got["train_loss"]):
        moved = _TiedLM(plain).eval()
        state = point_state(net.state_dict(), d, float(c[0]), float(c[1]))
        state["head.weight"] = state["emb.weight"]
        moved.load_state_dict(state)
        with torch.no_grad():
            want = float(cross_entropy(moved(ids), y).mean())
        assert value == pytest.approx(want, rel=1e-5)


def test_hessian_operator_on_tied_weights() -> None:
    """functional_call refused the tied pair ('got multiple values for keys ... tied'); the
    Hessian's loss and a Hessian-vector product now run, the product matching autograd's."""
    from landscape.engine.hessian import HessianOperator
    from landscape.engine.losses import cross_entropy

    torch.manual_seed(0)
    net = _TiedLM(plain=True).eval()
    ids, y = torch.randint(0, 11, (16, 5)), torch.randint(0, 11, (16,))
    op = HessianOperator(net, ids, y)
    with torch.no_grad():
        assert op.loss() == pytest.approx(float(cross_entropy(net(ids), y).mean()), rel=1e-5)
    v = torch.randn(op.dim, dtype=torch.float64)
    hv = op.matvec(v)
    named = dict(net.named_parameters())
    params = [named[k] for k in op.keys]  # the covered ones (2+ dims by default)
    loss = cross_entropy(net(ids), y).mean()
    grads = torch.autograd.grad(loss, params, create_graph=True)
    flat = torch.cat([g.reshape(-1) for g in grads])
    want = torch.cat([h.reshape(-1) for h in torch.autograd.grad(flat @ v.float(), params)])
    torch.testing.assert_close(hv.float(), want, rtol=1e-3, atol=1e-5)
