"""Tests of the model zoo: every registered model, the registry, and the published sizes."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from landscape.errors import LandscapeError
from landscape.models import (
    create_model,
    is_model_name,
    list_models,
    register_model,
    unregister_model,
)
from landscape.models.resnet import ResNet

ALL_MODELS = list_models()
NOSHORT_MODELS = [name for name in ALL_MODELS if name.endswith("_noshort")]


def _count_parameters(name: str, **kwargs: int) -> int:
    # The meta device skips allocation and initialisation: counting is instant even for WRN-56-8.
    with torch.device("meta"):
        model = create_model(name, **kwargs)
    return sum(p.numel() for p in model.parameters())


def _meta_state_shapes(name: str) -> dict[str, torch.Size]:
    with torch.device("meta"):
        model = create_model(name)
    return {key: value.shape for key, value in model.state_dict().items()}


# ----------------------------------------------------------------------------- every model


def test_registry_holds_the_papers_models() -> None:
    expected = {
        "resnet8", "resnet20", "resnet56", "resnet110",
        "wrn56_2", "wrn56_4", "wrn56_8", "densenet121", "densenet_bc40", "vgg9",
        "mlp", "cnn_small",
    }  # fmt: skip
    assert expected <= set(ALL_MODELS)
    for name in expected - {"densenet121", "densenet_bc40", "vgg9", "mlp", "cnn_small"}:
        assert f"{name}_noshort" in ALL_MODELS


@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_small_and_cifar_inputs(name: str) -> None:
    torch.manual_seed(0)
    for channels, size in ((1, 8), (3, 32)):
        model = create_model(name, in_channels=channels, num_classes=7).eval()
        with torch.no_grad():
            out = model(torch.randn(2, channels, size, size))
        assert out.shape == (2, 7), (channels, size)
        assert torch.isfinite(out).all(), (channels, size)


@pytest.mark.parametrize("name", ["resnet8", "densenet_bc40", "vgg9", "cnn_small", "mlp"])
def test_odd_input_size_and_training_step(name: str) -> None:
    model = create_model(name, in_channels=3, num_classes=5).train()
    out = model(torch.randn(2, 3, 11, 11))
    out.sum().backward()
    assert out.shape == (2, 5)
    assert all(p.grad is not None for p in model.parameters())


# ----------------------------------------------------------------------------- sizes


def _cifar_resnet_parameters(
    depth: int, width: int = 16, widen: int = 1, shortcut: bool = True, classes: int = 10
) -> int:
    """Parameter count of a CIFAR ResNet from its definition, one layer at a time."""
    n = (depth - 2) // 6
    channels = width * widen
    total = 3 * channels * 9 + 2 * channels  # stem conv + BN
    for stage, stage_width in enumerate((channels, 2 * channels, 4 * channels)):
        for block in range(n):
            stride = 2 if stage > 0 and block == 0 else 1
            total += channels * stage_width * 9 + 2 * stage_width  # conv1 + bn1
            total += stage_width * stage_width * 9 + 2 * stage_width  # conv2 + bn2
            if shortcut and (stride != 1 or channels != stage_width):
                total += channels * stage_width + 2 * stage_width  # 1x1 projection + BN
            channels = stage_width
    return total + channels * classes + classes


def _vgg9_parameters(classes: int = 10) -> int:
    total, channels = 0, 3
    for out in (64, 64, 128, 128, 256, 256, 256):
        total += channels * out * 9 + out + 2 * out  # biased conv + BN
        channels = out
    total += 256 * 4 * 4 * 256 + 256 + 2 * 256  # Linear 4096 -> 256 + BatchNorm1d
    return total + 256 * classes + classes


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [
        # He et al. (2016), Table 6: 0.27M, 0.85M, 1.7M (option A; option B adds 2.7K).
        ("resnet20", 0.26e6, 0.28e6),
        ("resnet56", 0.84e6, 0.87e6),
        ("resnet110", 1.69e6, 1.74e6),
        # DenseNet-121 with a CIFAR stem and 10 classes: 6.96M.
        ("densenet121", 6.9e6, 7.1e6),
        # DenseNet-BC, L=40, k=12: 0.18M.
        ("densenet_bc40", 0.17e6, 0.19e6),
        # VGG-9 of Li et al. (2018): 2.79M, almost half of it in the 4096 -> 256 layer.
        ("vgg9", 2.75e6, 2.83e6),
    ],
)
def test_parameter_counts_match_published_sizes(name: str, low: float, high: float) -> None:
    assert low <= _count_parameters(name) <= high


@pytest.mark.parametrize(
    ("name", "depth", "widen", "shortcut"),
    [
        ("resnet20", 20, 1, True),
        ("resnet56", 56, 1, True),
        ("resnet56_noshort", 56, 1, False),
        ("resnet110", 110, 1, True),
        ("wrn56_2", 56, 2, True),
        ("wrn56_8_noshort", 56, 8, False),
    ],
)
def test_resnet_parameter_counts_match_layer_by_layer_sum(
    name: str, depth: int, widen: int, shortcut: bool
) -> None:
    expected = _cifar_resnet_parameters(depth, widen=widen, shortcut=shortcut)
    assert _count_parameters(name) == expected


def test_exact_parameter_counts() -> None:
    assert _count_parameters("vgg9") == _vgg9_parameters() == 2_789_706
    assert _count_parameters("densenet121") == 6_956_298
    assert _count_parameters("densenet_bc40") == 176_122
    assert _count_parameters("resnet8", width=4) == _cifar_resnet_parameters(8, width=4)
    assert _count_parameters("mlp", in_channels=1, hidden=64) == 64 * 64 + 64 + 64 * 64 + 64 + 650


def test_resnet_depth_must_be_6n_plus_2() -> None:
    with pytest.raises(LandscapeError, match="6n\\+2.*got 21"):
        ResNet(21)


# ----------------------------------------------------------------------------- no-shortcut twins


@pytest.mark.parametrize("twin", NOSHORT_MODELS)
def test_noshort_twin_differs_only_by_shortcut(twin: str) -> None:
    base = twin.removesuffix("_noshort")
    assert is_model_name(base)
    skip, noskip = _meta_state_shapes(base), _meta_state_shapes(twin)
    assert any(".shortcut." in key for key in skip)
    assert list(noskip) == [key for key in skip if ".shortcut." not in key]
    assert all(noskip[key] == skip[key] for key in noskip)


def test_noshort_twin_loads_skip_weights_and_drops_the_skip() -> None:
    torch.manual_seed(0)
    skip = create_model("resnet8", width=4).eval()
    noskip = create_model("resnet8_noshort", width=4).eval()
    result = noskip.load_state_dict(skip.state_dict(), strict=False)
    assert result.missing_keys == []
    assert result.unexpected_keys and all(".shortcut." in k for k in result.unexpected_keys)
    assert not any("shortcut" in name for name, _ in noskip.named_modules())
    # An identity-shortcut block of the skip net adds its input back; the twin does not.
    x = torch.randn(2, 4, 8, 8)
    block, twin_block = skip.layer1[0], noskip.layer1[0]
    with torch.no_grad():
        residual = block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x)))))
        torch.testing.assert_close(block(x), torch.relu(residual + x))
        torch.testing.assert_close(twin_block(x), torch.relu(residual))


def test_wide_resnet_widths() -> None:
    shapes = _meta_state_shapes("wrn56_4")
    assert shapes["conv1.weight"] == (64, 3, 3, 3)
    assert shapes["layer2.0.shortcut.0.weight"] == (128, 64, 1, 1)
    assert shapes["linear.weight"] == (10, 256)


# ----------------------------------------------------------------------------- registry


def test_list_models_filters_with_shell_patterns() -> None:
    resnets = list_models("resnet*")
    assert resnets == sorted(resnets)
    assert {"resnet8", "resnet56", "resnet56_noshort", "resnet110_noshort"} <= set(resnets)
    assert all(name.startswith("resnet") for name in resnets)
    assert list_models("*_noshort") == NOSHORT_MODELS
    assert list_models("no_such_family*") == []
    assert list_models() == sorted(list_models())


def test_unknown_name_lists_close_matches() -> None:
    with pytest.raises(LandscapeError, match="close matches: .*resnet56") as info:
        create_model("resnet57")
    message = str(info.value)
    assert message.startswith("unknown model 'resnet57';")
    assert "resnet56_noshort" in message and "landscape models" in message
    assert "\n" not in message


def test_unknown_name_without_close_match_lists_some_models() -> None:
    with pytest.raises(LandscapeError, match="available: .*cnn_small"):
        create_model("qqqqqqqqqqqq")
    assert not is_model_name("qqqqqqqqqqqq")


def test_bad_keyword_names_the_accepted_ones() -> None:
    with pytest.raises(LandscapeError, match="'vgg9'.*accepts: in_channels, num_classes"):
        create_model("vgg9", width=8)


@pytest.fixture
def factory_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = "landscape_test_factories"
    source = """
        import torch


        def build(in_channels=3, num_classes=10):
            return torch.nn.Linear(in_channels, num_classes)


        def broken(**kwargs):
            raise ValueError("no such depth: 7")


        def not_a_model(**kwargs):
            return 42
    """
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_import_path_calls_the_factory(factory_module: str) -> None:
    model = create_model(f"{factory_module}:build", in_channels=4, num_classes=3)
    assert isinstance(model, nn.Linear)
    assert (model.in_features, model.out_features) == (4, 3)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (":broken", "model factory 'landscape_test_factories:broken' failed: ValueError: no such"),
        (":missing", "cannot find model factory 'landscape_test_factories:missing'"),
        (":not_a_model", "returned a int, expected a torch.nn.Module"),
    ],
)
def test_import_path_errors_name_the_path(factory_module: str, target: str, expected: str) -> None:
    with pytest.raises(LandscapeError) as info:
        create_model(factory_module + target)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_import_path_to_missing_module() -> None:
    path = "landscape_no_such_module_xyz:build"
    with pytest.raises(LandscapeError, match=f"'{path}'.*ModuleNotFoundError"):
        create_model(path)
    with pytest.raises(LandscapeError, match="package.module:factory"):
        create_model("landscape_no_such_module_xyz:")


def test_register_model_decorator_round_trip() -> None:
    before = list_models()

    def landscape_test_tiny_net(in_channels: int = 3, num_classes: int = 10) -> nn.Module:
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_channels, 2))

    try:
        assert register_model(landscape_test_tiny_net) is landscape_test_tiny_net
        assert is_model_name("landscape_test_tiny_net")
        assert "landscape_test_tiny_net" in list_models("landscape_test_*")
        model = create_model("landscape_test_tiny_net", in_channels=1)
        assert model(torch.randn(2, 1, 8, 8)).shape == (2, 2)
    finally:
        unregister_model("landscape_test_tiny_net")
    assert list_models() == before
    with pytest.raises(LandscapeError, match="unknown model"):
        unregister_model("landscape_test_tiny_net")


def test_register_model_refuses_to_shadow_a_name() -> None:
    def resnet56(in_channels: int = 3, num_classes: int = 10) -> nn.Module:
        return nn.Identity()

    with pytest.raises(LandscapeError, match="'resnet56' is already registered"):
        register_model(resnet56)
    assert isinstance(create_model("resnet56", width=2), ResNet)  # the original is kept
