"""Tests of grid specs and point order (value [i, j] at (x[i], y[j]), non-square grids)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from landscape.core.grid import (
    Axis,
    Grid,
    coarse_to_fine,
    level_points,
    level_spacings,
    point_levels,
)
from landscape.errors import LandscapeError


def test_axis_parses_min_max_num() -> None:
    axis = Axis.parse("-1:1:51")
    assert (axis.start, axis.stop, axis.num) == (-1.0, 1.0, 51)
    np.testing.assert_array_equal(axis.coords(), np.linspace(-1, 1, 51))
    assert axis.coords().dtype == np.float64
    assert Axis.parse(axis.spec()) == axis


@pytest.mark.parametrize("spec", ["0:0.1234567:3", "-0.5:1.5:401", "1e-9:3.000000001:2", "-1e20:1e20:5"])
def test_spec_round_trips_exactly(spec: str) -> None:
    """The spec identifies the grid in a surface file: nearby grids must not share one."""
    axis = Axis.parse(spec)
    assert Axis.parse(axis.spec()) == axis
    assert Axis.parse("0:0.1234568:3").spec() != Axis.parse("0:0.1234567:3").spec()
    assert Axis.parse("-1:1:51").spec() == "-1:1:51"


def test_axis_accepts_exponents_and_a_single_point() -> None:
    assert Axis.parse("-1e4:1e4:3").coords().tolist() == [-1e4, 0.0, 1e4]
    assert Axis.parse("0.5:0.5:1").coords().tolist() == [0.5]


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("1:-1:0", "at least 1 point"),
        ("1:-1:5", "MIN must be below MAX"),
        ("0:0:3", "MIN must be below MAX"),
        ("a:b:c", "must be numbers"),
        ("-1:1:2.5", "NUM an integer"),
        ("-1:1", "is not MIN:MAX:NUM"),
        ("-1:1:5:7", "is not MIN:MAX:NUM"),
        ("", "is not MIN:MAX:NUM"),
        ("-inf:1:5", "non-finite"),
        ("nan:1:5", "non-finite"),
    ],
)
def test_bad_axis_specs_give_one_line_naming_the_option(spec: str, fragment: str) -> None:
    with pytest.raises(LandscapeError) as e:
        Axis.parse(spec, "y")
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith("--y=")
    assert fragment in message


def test_non_square_grid_numbers_points_in_c_order() -> None:
    grid = Grid(Axis.parse("-1:1:5"), Axis.parse("0:0.5:3"))
    assert grid.shape == (5, 3) and grid.num_points == 15 and grid.ndim == 2
    xs, ys = np.linspace(-1, 1, 5), np.linspace(0, 0.5, 3)
    coords = grid.coords_of(np.arange(15))
    assert coords.shape == (15, 2)
    for flat in range(15):
        i, j = np.unravel_index(flat, grid.shape)
        assert coords[flat].tolist() == [xs[i], ys[j]]


def test_1d_grid() -> None:
    grid = Grid(Axis.parse("-0.5:1.5:9"))
    assert grid.shape == (9,) and grid.ndim == 1 and grid.num_points == 9
    np.testing.assert_array_equal(grid.coords_of([0, 4, 8])[:, 0], [-0.5, 0.5, 1.5])
    assert grid.coords_of([3]).shape == (1, 1)


def test_center_index() -> None:
    assert Grid(Axis.parse("-1:1:5"), Axis.parse("-1:1:3")).center_index() == 2 * 3 + 1
    assert Grid(Axis.parse("-1:1:5"), Axis.parse("0:1:3")).center_index() == 2 * 3 + 0
    assert Grid(Axis.parse("-1:1:4")).center_index() is None
    assert Grid(Axis.parse("-0.5:1.5:5")).center_index() == 1


# ----------------------------------------------------------------------------- coarse-to-fine order


def _axis_set(n: int, spacing: int, anchor: int = 0) -> set[int]:
    """Indices kept at `spacing`, written independently: the anchor plus or minus multiples of
    it, and both ends."""
    return {i for i in range(n) if (i - anchor) % spacing == 0} | {0, n - 1}


@pytest.mark.parametrize(
    ("shape", "anchors"),
    [((51, 51), None), ((51, 51), (25, 25)), ((21, 15), (10, 7)), ((21, 15), (3, 14)), ((5, 3), None),
     ((1, 7), (0, 3)), ((2, 2), None), ((1, 1), None), ((9,), (4,)), ((2,), None), ((1,), None), ((33, 64), (16, 0))],
)
def test_coarse_to_fine_visits_every_point_once_level_by_level(
    shape: tuple[int, ...], anchors: tuple[int, ...] | None
) -> None:
    order = coarse_to_fine(shape, anchors)
    total = int(np.prod(shape))
    assert order.dtype == np.int64 and sorted(order.tolist()) == list(range(total))
    if anchors is None:  # a grid from 0 to 1: no zero inside, its levels start at index 0
        assert Grid(*(Axis(0.0, 1.0, n) for n in shape)).order().tolist() == order.tolist()
    spacings = level_spacings(shape, anchors)
    anchors = anchors or tuple(0 for _ in shape)
    assert spacings[-1] == 1 and all(a == 2 * b for a, b in zip(spacings, spacings[1:]))
    levels = point_levels(shape, anchors).ravel()[order]
    assert (np.diff(levels) >= 0).all()  # levels in order
    seen = 0
    for k, spacing in enumerate(spacings):
        # the points of levels 0..k are exactly the full sub-grid at this spacing
        sub = [sorted(_axis_set(n, spacing, a)) for n, a in zip(shape, anchors)]
        expected = {int(np.ravel_multi_index(ix, shape)) for ix in itertools.product(*sub)}
        seen = int((levels <= k).sum())
        assert set(order[:seen].tolist()) == expected
        assert seen == int(np.prod([len(s) for s in sub]))
        assert set(level_points(shape[0], spacing, anchors[0]).tolist()) == _axis_set(shape[0], spacing, anchors[0])
        assert all(a in s for a, s in zip(anchors, sub))  # every level holds the anchor
        # within a level, C order
        part = order[levels == k]
        assert (np.diff(part) > 0).all()
    assert seen == total


def test_half_resolution_of_51x51_is_about_a_quarter_of_the_points() -> None:
    levels = point_levels((51, 51))
    assert level_spacings((51, 51)) == (32, 16, 8, 4, 2, 1)
    assert [(levels <= k).sum() for k in range(6)] == [9, 25, 64, 196, 676, 2601]
    assert level_points(51, 32).tolist() == [0, 32, 50]
    # a surface's grid counts from its centre, which every level then holds (25 is odd)
    grid = Grid(Axis.parse("-1:1:51"), Axis.parse("-1:1:51"))
    assert grid.anchors() == (25, 25) and grid.order()[:25].tolist() == [
        i * 51 + j for i in (0, 9, 25, 41, 50) for j in (0, 9, 25, 41, 50)
    ]
    levels = point_levels(grid.shape, grid.anchors())
    assert [(levels <= k).sum() for k in range(5)] == [25, 81, 225, 729, 2601]  # 729 = 28%
    assert level_points(51, 2, 25).tolist() == [0, *range(1, 50, 2), 50]
    assert Grid(Axis.parse("0.5:1:3")).anchors() == (0,)


def test_the_order_examples_in_the_docstrings_hold() -> None:
    import doctest

    import landscape.core.grid
    import landscape.core.preview

    for module in (landscape.core.grid, landscape.core.preview):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__
