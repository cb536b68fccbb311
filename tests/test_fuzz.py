"""Fuzz: damaged and hostile surface files and checkpoints through every command that reads them.

Each case starts from a real surface (or checkpoint) made by the tool, damages it (truncation,
flipped bytes, wrong dtypes and shapes, hostile attributes, huge declared sizes, links to other
files) and runs the reading commands in-process. Every run must either succeed or exit
non-zero with exactly one line on stderr, print no control character taken from the file, and
leave the input byte-identical. The grid-spec parser and the schema validator get
property-based tests (hypothesis).
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from landscape.cli import main
from landscape.core.grid import MAX_GRID_POINTS, Axis
from landscape.errors import LandscapeError
from landscape.io.schema import READ_VERSION, validate_surface
from landscape.io.storage import read_surface

GRID = ["--x=-1:1:3", "--y=-1:1:3"]
HOSTILE = "\x1b[2J\x1b[31mEVIL\x07\r\u202emodel\nsecond line"


# ---------------------------------------------------------------------------------------------
# the real files every case starts from


@pytest.fixture(scope="module")
def real_surface(tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fuzz") / "real.h5"
    rc = main(["surface", "--ckpt", str(tiny_ckpt), *GRID, "--max-samples", "16", "--quiet",
               "--device", "cpu", "--out", str(out)])
    assert rc == 0 and read_surface(out).done == 9
    return out


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """One in-process run of `landscape`, as (exit code, stdout, stderr). A warning it raises
    (which the command line would print as more lines on stderr) is added to stderr."""
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse
            rc = int(e.code or 0)
    out, err = capsys.readouterr()
    noisy = [w for w in caught if issubclass(w.category, (RuntimeWarning, UserWarning))]
    return rc, out, err + "".join(f"{w.category.__name__}: {w.message}\n" for w in noisy)


def _check(argv: list[str], target: Path, capsys: pytest.CaptureFixture[str], may_write: bool = False) -> int:
    before = target.read_bytes()
    rc, out, err = _run(argv, capsys)
    if rc != 0:
        lines = err.strip().splitlines()
        assert len(lines) == 1, f"{argv[0]}: expected one line on stderr, got {err!r}"
        assert lines[0].startswith(f"landscape {argv[0]}: error: "), lines[0]
    elif argv[0] != "surface":  # a reading command that succeeds says nothing on stderr
        assert err == "", f"{argv[0]} succeeded but wrote {err!r}"
    assert "Traceback" not in err
    for ch in ("\x1b", "\x07", "\r", "\u202e"):
        assert ch not in out and ch not in err, f"{argv[0]} printed {ch!r} from the file"
    if not (may_write and rc == 0):
        assert target.read_bytes() == before, f"{argv[0]} changed its input"
    return rc


# ---------------------------------------------------------------------------------------------
# damaged surface files


def _truncate(fraction: float) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * fraction)])

    return damage


def _flip(seed: int, count: int = 8) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        data = bytearray(path.read_bytes())
        rng = np.random.default_rng(seed)
        for pos in rng.integers(0, len(data), count):
            data[pos] ^= int(rng.integers(1, 256))
        path.write_bytes(bytes(data))

    return damage


def _zero_block(seed: int) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        data = bytearray(path.read_bytes())
        start = int(np.random.default_rng(seed).integers(0, len(data) - 512))
        data[start : start + 512] = bytes(512)
        path.write_bytes(bytes(data))

    return damage


def _edit(change: Callable[[h5py.File], None]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        with h5py.File(path, "r+") as f:
            change(f)

    return damage


def _edits(*changes: Callable[[h5py.File], None]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        with h5py.File(path, "r+") as f:
            for change in changes:
                change(f)

    return damage


def _replace(name: str, **kwargs: object) -> Callable[[h5py.File], None]:
    def change(f: h5py.File) -> None:
        del f[name]
        f.create_dataset(name, **kwargs)

    return change


def _set_attr(name: str, value: object) -> Callable[[h5py.File], None]:
    def change(f: h5py.File) -> None:
        f.attrs[name] = value

    return change


def _del(name: str) -> Callable[[h5py.File], None]:
    def change(f: h5py.File) -> None:
        del f[name]

    return change


def _del_attr(name: str) -> Callable[[h5py.File], None]:
    def change(f: h5py.File) -> None:
        del f.attrs[name]

    return change


def _link(name: str, link: object) -> Callable[[h5py.File], None]:
    def change(f: h5py.File) -> None:
        del f[name]
        f[name] = link

    return change


def _external_storage(tmp: Path) -> Callable[[h5py.File], None]:
    def change(f: h5py.File) -> None:
        (tmp / "raw.bin").write_bytes(bytes(72))
        del f["train_loss"]
        f.create_dataset("train_loss", shape=(3, 3), dtype="f8", external=[(str(tmp / "raw.bin"), 0, 72)])

    return change


SURFACE_CASES: dict[str, Callable[[Path], None]] = {
    **{f"truncated-{f}": _truncate(f) for f in (0.0, 0.05, 0.5, 0.9, 0.995)},
    **{f"flipped-{s}": _flip(s) for s in range(4)},
    **{f"zeroed-{s}": _zero_block(s) for s in range(2)},
    "no-computed": _edit(_del("computed")),
    "no-xcoordinates": _edit(_del("xcoordinates")),
    "string-array": _edit(_replace("train_loss", data=np.array([[b"a"] * 3] * 3))),
    "3d-array": _edit(_replace("train_loss", data=np.zeros((3, 3, 2)))),
    "complex-array": _edit(_replace("test_loss", data=np.zeros((3, 3), dtype=np.complex128))),
    "shape-mismatch": _edit(_replace("train_acc", data=np.zeros((3, 4)))),
    "computed-3d": _edit(_replace("computed", data=np.ones((3, 3, 1), dtype=np.uint8))),
    "coords-2d": _edit(_replace("xcoordinates", data=np.zeros((3, 1)))),
    "coords-nan": _edit(_replace("xcoordinates", data=np.array([-1.0, np.nan, 1.0]))),
    "coords-decreasing": _edit(_replace("ycoordinates", data=np.array([1.0, 0.0, -1.0]))),
    "coords-strings": _edit(_replace("xcoordinates", data=np.array([b"a", b"b", b"c"]))),
    "huge-declared-x": _edit(_replace("xcoordinates", shape=(2_000_000_000,), dtype="f8", chunks=(1024,))),
    "huge-declared-array": _edit(_replace("train_loss", shape=(100_000, 100_000), dtype="f8", chunks=(64, 64))),
    "version-text": _edit(_set_attr("version", "one")),
    "version-newer": _edit(_set_attr("version", 99)),
    "version-fraction": _edit(_set_attr("version", 0.5)),
    "version-missing": _edit(_del_attr("version")),
    "settings-bad-json": _edit(_set_attr("settings", "{not json")),
    "runs-deep-json": _edit(_set_attr("runs", "[" * 100_000 + "]" * 100_000)),
    "metrics-a-list": _edit(_set_attr("metrics", "[1, 2]")),
    "hostile-attrs": _edits(
        _set_attr("model", HOSTILE),
        _set_attr("dataset", '{"name": "\\u001b[31mred\\u202e"}'),
        _set_attr("\x1b[31mname", HOSTILE),
        _set_attr("runs", '[{"seconds": "soon", "points": "\\u001b[2J"}]'),
    ),
    "huge-attr": _edit(_set_attr("notes", np.zeros(6000))),
    "invalid-utf8-attr": _edit(_set_attr("model", np.bytes_(b"\xff\xfe\x1b[2J"))),
    "external-link": _edit(_link("train_loss", h5py.ExternalLink("/etc/hostname", "/data"))),
    "dangling-soft-link": _edit(_link("test_loss", h5py.SoftLink("/nowhere"))),
    "paper-layout": _edit(_del_attr("format")),
    "not-a-surface": lambda p: p.write_bytes(b"hello, not HDF5\n" * 10),
}


@pytest.mark.parametrize("case", sorted(SURFACE_CASES), ids=str)
def test_damaged_surface_through_every_reader(
    case: str, real_surface: Path, tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "s.h5"
    shutil.copyfile(real_surface, target)
    SURFACE_CASES[case](target)
    codes = {}
    for argv in (
        ["info", str(target)],
        ["info", str(target), "--json"],
        ["plot", str(target), "--surf", "train_loss", "--kind", "heatmap", "--out", "p"],
        ["compare", str(target), str(target), "--out", "c.png"],
        ["report", str(target), "-o", "r.html"],
        ["export", str(target), "--vtp", "--out", "e"],
    ):
        codes[argv[0]] = _check(argv, target, capsys)
    # its directions, reused for another surface
    reuse = tmp_path / "reuse.h5"
    rc = _check(["surface", "--ckpt", str(tiny_ckpt), "--dirs", str(target), "--x=-1:1:2", "--y=-1:1:2",
                 "--max-samples", "8", "--quiet", "--device", "cpu", "--out", str(reuse)], target, capsys)
    assert rc == 0 or not reuse.exists()
    # resume: reads the file; it may complete it (a valid file), else must leave it alone
    _check(["surface", "--ckpt", str(tiny_ckpt), *GRID, "--max-samples", "16", "--quiet",
            "--device", "cpu", "--out", str(target)], target, capsys, may_write=True)
    if case.startswith(("no-", "string", "3d", "complex", "shape", "computed-3d", "coords", "huge",
                        "version", "settings", "runs-deep", "metrics", "external", "dangling",
                        "truncated", "not-a")):
        assert codes["info"] != 0 and codes["plot"] != 0, f"{case} was accepted"


def test_external_storage_is_refused(
    real_surface: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "s.h5"
    shutil.copyfile(real_surface, target)
    _edit(_external_storage(tmp_path))(target)
    assert _check(["info", str(target)], target, capsys) != 0
    with pytest.raises(LandscapeError, match="keeps its data in another file"):
        read_surface(target)


def test_hostile_attributes_are_printed_escaped(
    real_surface: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "s.h5"
    shutil.copyfile(real_surface, target)
    _edit(_set_attr("model", HOSTILE))(target)
    rc, out, _ = _run(["info", str(target)], capsys)
    assert rc == 0
    assert "model: \\x1b[2J\\x1b[31mEVIL\\x07\\x0d\\u202emodel\\nsecond line" in out.splitlines()


# ---------------------------------------------------------------------------------------------
# damaged checkpoints


def _ckpt_edit(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        obj = torch.load(path, weights_only=True)
        change(obj)
        torch.save(obj, path)

    return damage


def _set(key: str, value: object) -> Callable[[dict], None]:
    def change(obj: dict) -> None:
        obj[key] = value

    return change


def _reshape_first(obj: dict) -> None:
    key = next(iter(obj["state_dict"]))
    obj["state_dict"][key] = torch.zeros(7, 3)


CKPT_CASES: dict[str, Callable[[Path], None]] = {
    **{f"truncated-{f}": _truncate(f) for f in (0.0, 0.3, 0.9)},
    **{f"flipped-{s}": _flip(s, 4) for s in range(3)},
    "state-dict-a-string": _ckpt_edit(_set("state_dict", "weights")),
    "model-kwargs-a-list": _ckpt_edit(_set("model_kwargs", [1, 2])),
    "version-text": _ckpt_edit(_set("version", "one")),
    "data-a-string": _ckpt_edit(_set("data", "digits")),
    "metrics-a-list": _ckpt_edit(_set("metrics", [1.0])),
    "epoch-text": _ckpt_edit(_set("epoch", "\x1b[31mlast")),
    "hostile-model-name": _ckpt_edit(_set("model", HOSTILE)),
    "unknown-data-set": _ckpt_edit(_set("data", {"name": HOSTILE})),
    "hostile-split-seed": _ckpt_edit(_set("data", {"name": "digits", "split_seed": -5})),
    "wrong-shape": _ckpt_edit(_reshape_first),
    # a model of 10^18 parameters: refused from a shell on the meta device, before allocating
    "huge-model-kwargs": _ckpt_edit(_set("model_kwargs", {"hidden": 10**9})),
}


@pytest.mark.parametrize("case", sorted(CKPT_CASES), ids=str)
def test_damaged_checkpoint_through_every_reader(
    case: str, tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "c.pt"
    shutil.copyfile(tiny_ckpt, target)
    CKPT_CASES[case](target)
    out = tmp_path / "s.h5"
    _check(["info", str(target)], target, capsys)
    rc = _check(["surface", "--ckpt", str(target), "--x=-1:1:2", "--max-samples", "8", "--quiet",
                 "--device", "cpu", "--out", str(out)], target, capsys)
    assert rc == 0 or not out.exists(), "a failed surface run left a file behind"
    _check(["hessian", "--ckpt", str(target), "--max-samples", "8", "--top-k", "1", "--iters", "3",
            "--device", "cpu"], target, capsys)


# ---------------------------------------------------------------------------------------------
# properties: the grid-spec parser and the schema validator


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@given(start=finite, stop=finite, num=st.integers(min_value=-5, max_value=2 * MAX_GRID_POINTS))
@settings(max_examples=200, deadline=None)
def test_axis_parse_accepts_exactly_the_valid_specs(start: float, stop: float, num: int) -> None:
    spec = f"{start!r}:{stop!r}:{num}"
    valid = 1 <= num <= MAX_GRID_POINTS and (num == 1 or stop > start)
    try:
        axis = Axis.parse(spec)
    except LandscapeError as e:
        assert "\n" not in str(e) and spec in str(e)
        if valid:  # refused only because its points collide in float64 (or overflow)
            assert "collide" in str(e)
            with np.errstate(over="ignore", invalid="ignore"):
                coords = np.linspace(start, stop, num)
            assert not (np.isfinite(coords).all() and (np.diff(coords) > 0).all())
        return
    assert valid and (axis.start, axis.stop, axis.num) == (start, stop, num)
    assert Axis.parse(axis.spec()) == axis  # the stored spec reads back exactly
    if num <= 100_000:  # the file's reader will accept these coordinates
        coords = axis.coords()
        assert np.isfinite(coords).all() and (np.diff(coords) > 0).all()


@given(st.text(max_size=40))
@settings(max_examples=200, deadline=None)
def test_axis_parse_never_raises_anything_but_one_line(text: str) -> None:
    try:
        Axis.parse(text)
    except LandscapeError as e:
        assert "\n" not in str(e)


def _dataset_strategy() -> st.SearchStrategy:
    shapes = st.sampled_from([(3, 3), (3,), (3, 4), (3, 3, 2), (9,), (0,), (1, 1)])
    dtypes = st.sampled_from(["f8", "f4", "i4", "u1", "S3", "c16", "?"])
    return st.tuples(shapes, dtypes)


@given(
    name=st.sampled_from(["train_loss", "computed", "xcoordinates", "ycoordinates", "point_rank", "extra_acc"]),
    spec=_dataset_strategy(),
    # h5py cannot store a NUL inside a string attribute: such a file cannot be made, so it is not drawn
    version=st.one_of(st.integers(-2, 3), st.floats(allow_nan=True),
                      st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=5), st.booleans()),
    settings_text=st.one_of(st.just('{"grid": {}}'), st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)),
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_validator_accepts_exactly_what_the_reader_can_use(
    name: str, spec: tuple, version: object, settings_text: str, real_surface: Path, tmp_path: Path
) -> None:
    """Whatever is put in the file, the validator raises one LandscapeError or `read_surface`
    returns arrays of the grid's shape that the plot functions can take."""
    target = tmp_path / "v.h5"
    shutil.copyfile(real_surface, target)
    shape, dtype = spec
    with h5py.File(target, "r+") as f:
        if name in f:
            del f[name]
        f.create_dataset(name, data=np.zeros(shape, dtype=dtype))
        f.attrs["version"] = version
        f.attrs["settings"] = settings_text
    before = target.read_bytes()
    try:
        with h5py.File(target, "r") as f:
            validate_surface(f, target)
        s = read_surface(target)
    except LandscapeError as e:
        assert "\n" not in str(e) and str(target) in str(e)
    else:
        assert s.computed.shape == (len(s.x), len(s.y))
        for key, value in s.arrays.items():
            assert value.shape == s.computed.shape, key
            assert value.dtype.kind in "fiub", key
        assert 1 <= s.attrs["version"] <= READ_VERSION  # a version this reader knows (2: frames files)
    assert target.read_bytes() == before


# ---------------------------------------------------------------------------------------------
# files that pull in other files: soft and external links, virtual datasets and external storage,
# at every depth, in surface files and in direction files of both formats

SECRET = 4242.4242  # the other file's values: they must never reach any output
MARKER = "LS-SECRET-MARKER-7f3a"  # the other file's text


def _secret_files(tmp: Path, shape: tuple[int, ...], dtype: np.dtype) -> tuple[Path, Path]:
    """Another HDF5 file (`/data` of this shape and dtype, `/text`) and a raw file of the same
    values, both holding the marker."""
    other = tmp / "secret.h5"
    with h5py.File(other, "w") as g:
        g.create_dataset("data", data=np.full(shape, SECRET, dtype=dtype))
        g.create_dataset("text", data=np.bytes_(MARKER.encode()))
        g.attrs["note"] = MARKER
    raw = tmp / "secret.bin"
    raw.write_bytes(np.full(shape, SECRET, dtype=dtype).tobytes() + MARKER.encode())
    return other, raw


def _hostile(kind: str, tmp: Path) -> Callable[[h5py.Group, str], None]:
    """Replace (or add) `name` in `group` by something whose data lie outside the file."""

    def put(group: h5py.Group, name: str) -> None:
        old = group.get(name)
        shape = tuple(old.shape) if isinstance(old, h5py.Dataset) else (3, 3)
        dtype = old.dtype if isinstance(old, h5py.Dataset) else np.dtype("f8")
        other, raw = _secret_files(tmp, shape, dtype)
        if kind == "soft-link":  # to a copy of the data elsewhere in the file
            hidden = group.file.require_group("hidden")
            hidden.create_dataset(f"d{len(hidden)}", data=np.full(shape, SECRET, dtype=dtype))
            target = f"/hidden/d{len(hidden) - 1}"
        if old is not None or name in group:
            del group[name]
        if kind == "soft-link":
            group[name] = h5py.SoftLink(target)
        elif kind == "external-link":
            group[name] = h5py.ExternalLink(str(other), "/data")
        elif kind == "virtual":
            layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
            layout[...] = h5py.VirtualSource(str(other), "data", shape=shape)
            group.create_virtual_dataset(name, layout)
        elif kind == "external-storage":
            size = int(np.prod(shape)) * dtype.itemsize
            group.create_dataset(name, shape=shape, dtype=dtype, external=[(str(raw), 0, size)])
        else:
            raise AssertionError(kind)

    return put


HOSTILE_KINDS = ("soft-link", "external-link", "virtual", "external-storage")
# where, in a surface file: (group, name), the group made when missing
SURFACE_SPOTS = {
    "top": ("/", "train_loss"),
    "trajectory": ("/trajectory", "loss"),
    "directions-x": ("/directions/x", None),  # None: the group's first direction tensor
    "directions-y": ("/directions/y", None),
    "metadata-group": ("/meta/deeper/still", "notes"),
}
PAPER_SPOTS = {"top": ("/", "explained_variance_ratio_"), "xdirection": ("/xdirection", "0"),
               "ydirection": ("/ydirection", "1")}


def _plant(path: Path, spot: tuple[str, str | None], kind: str, tmp: Path) -> None:
    where, name = spot
    with h5py.File(path, "r+") as f:
        group = f.require_group(where)
        if name is None:
            name = json_order(group)[0]
        _hostile(kind, tmp)(group, name)


def json_order(group: h5py.Group) -> list[str]:
    import json

    return json.loads(group.attrs["order"])


def _paper_direction_file(real_surface: Path, path: Path) -> Path:
    """A direction file as the paper's code writes it (`xdirection/0..n`, `ydirection/0..n`)."""
    with h5py.File(real_surface, "r") as src, h5py.File(path, "w") as f:
        for axis, name in (("x", "xdirection"), ("y", "ydirection")):
            g = src["directions"][axis]
            out = f.create_group(name)
            for i, key in enumerate(json_order(g)):
                out.create_dataset(str(i), data=g[key][()])
        f.create_dataset("explained_variance_ratio_", data=np.array([0.5, 0.25]))
    return path


def _assert_refused_without_leak(argv: list[str], target: Path, capsys: pytest.CaptureFixture[str],
                                 outputs: list[Path]) -> None:
    rc = _check(argv, target, capsys)
    rc2, out, err = _run(argv, capsys)  # again, to read what it printed
    assert rc != 0 and rc2 != 0, f"{argv[0]} accepted a file that pulls in another file"
    printed = out + err
    assert MARKER not in printed and "4242.42" not in printed, printed
    for o in outputs:
        for f in (o.rglob("*") if o.is_dir() else [o]):
            if f.is_file():
                data = f.read_bytes()
                assert MARKER.encode() not in data and b"4242.42" not in data, f"{f} holds the other file's bytes"


def _surface_readers(target: Path, tiny_ckpt: Path, tmp: Path) -> list[list[str]]:
    return [
        ["info", str(target)],
        ["info", str(target), "--json"],
        ["plot", str(target), "--surf", "train_loss", "--kind", "heatmap", "--out", str(tmp / "p")],
        ["compare", str(target), str(target), "--out", str(tmp / "c.png")],
        ["report", str(target), "-o", str(tmp / "r.html")],
        ["export", str(target), "--vtp", "--out", str(tmp / "e")],
        ["surface", "--ckpt", str(tiny_ckpt), "--dirs", str(target), "--x=-1:1:2", "--y=-1:1:2",
         "--max-samples", "8", "--quiet", "--device", "cpu", "--out", str(tmp / "reuse.h5")],
        ["surface", "--ckpt", str(tiny_ckpt), *GRID, "--max-samples", "16", "--quiet",  # resume
         "--device", "cpu", "--out", str(target)],
    ]


@pytest.mark.parametrize("kind", HOSTILE_KINDS)
@pytest.mark.parametrize("spot", sorted(SURFACE_SPOTS))
def test_surface_pulling_in_another_file_is_refused_by_every_reader(
    spot: str, kind: str, real_surface: Path, tiny_ckpt: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "s.h5"
    shutil.copyfile(real_surface, target)
    _plant(target, SURFACE_SPOTS[spot], kind, tmp_path)
    outs = [tmp_path / n for n in ("p", "c.png", "r.html", "e", "reuse.h5")]
    for argv in _surface_readers(target, tiny_ckpt, tmp_path):
        _assert_refused_without_leak(argv, target, capsys, outs)
    assert not (tmp_path / "reuse.h5").exists()
    with pytest.raises(LandscapeError) as e:
        read_surface(target)
    assert str(target) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("kind", HOSTILE_KINDS)
@pytest.mark.parametrize("spot", sorted(PAPER_SPOTS))
def test_paper_direction_file_pulling_in_another_file_is_refused(
    spot: str, kind: str, real_surface: Path, tiny_ckpt: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    target = _paper_direction_file(real_surface, tmp_path / "dirs.h5")
    out = tmp_path / "new.h5"
    argv = ["surface", "--ckpt", str(tiny_ckpt), "--dirs", str(target), "--x=-1:1:2", "--y=-1:1:2",
            "--max-samples", "8", "--quiet", "--device", "cpu", "--out", str(out)]
    assert _check(argv, target, capsys) == 0  # the clean file is read: the case below is the cause
    out.unlink()
    _plant(target, PAPER_SPOTS[spot], kind, tmp_path)
    _assert_refused_without_leak(argv, target, capsys, [out])
    _assert_refused_without_leak(["info", str(target)], target, capsys, [])
    assert not out.exists()
