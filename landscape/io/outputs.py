"""Writing outputs safely: atomic replacement, never over a file of another kind, one-line OS errors.

Every file a command writes (plots, reports, comparison figures, VTK exports, checkpoints,
surface files) goes through `atomic_write`: the content is written to a temporary file in the
same folder and renamed onto the output only when complete, so a full disk or a crash leaves
the previous output as it was and no temporary file behind. `check_output` refuses, before any
work, an output path that is a folder or holds a file of another kind, recognized by its
content (an HDF5 surface, a torch checkpoint, a PNG...), never by its extension, and a path that
is a symbolic link: landscape never writes through a link, nor replaces one with a file.

A temporary file is named after its writer (`.NAME.<host>-<pid>-<start>.<random>.tmp`): one
left by a writer killed before its rename (kill -9, power loss) is removed by the next write of
the same output, or the next run that locks it, once that writer is certainly dead on this host
(`landscape.system.processes.is_dead`). Another writer's live temporary file, or any file not named
this way, is never touched.

Example:
    >>> check_output(Path("plots/r20.png"), "png", "--out")  # doctest: +SKIP
    >>> with atomic_write(Path("plots/r20.png"), "write plot") as tmp:  # doctest: +SKIP
    ...     fig.savefig(tmp, format="png")
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import LandscapeError
from ..system.processes import host_name, is_dead, process_start

__all__ = [
    "HDF5_SIGNATURE",
    "atomic_write",
    "check_not_link",
    "check_output",
    "check_free_space",
    "file_kind",
    "os_reason",
    "output_error",
    "remove_stale_temps",
]

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# HDF5 files may start with a user block: the signature is then at 512, 1024, 2048, ...
_HDF5_OFFSETS = (0, 512, 1024, 2048, 4096)
_SNIFF = 4096
_NAMES = {
    "hdf5": "an HDF5 file (a surface file?)",
    "checkpoint": "a torch checkpoint",
    "zip": "a zip archive",
    "png": "a PNG image",
    "pdf": "a PDF document",
    "svg": "an SVG image",
    "html": "an HTML page",
    "vtp": "a VTK file",
    "gif": "a GIF animation",
    "mp4": "an MP4 video",
    "other": "a file landscape does not write",
}
_MAX_TEMP_STEM = 180  # temporary names add ~55 characters; keep them under NAME_MAX (255)


def file_kind(path: Path) -> str | None:
    """What `path` holds, judged by content: None (nothing there), "folder", "empty", "hdf5",
    "checkpoint", "zip", "png", "pdf", "svg", "html", "vtp", "gif", "mp4" or "other"."""
    try:
        if path.is_dir():
            return "folder"
        if not path.parent.is_dir():
            return None  # nothing there to lose (writing will say why the folder is missing)
    except OSError:  # e.g. a name too long: nothing there, and writing will say why
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(_SNIFF + 8)
            f.seek(0)
            hdf5 = any(_at(f, o) == HDF5_SIGNATURE for o in _HDF5_OFFSETS)
    except FileNotFoundError:
        return None
    except OSError:
        return "other"  # unreadable: not ours to replace
    if not head:
        return "empty"
    if hdf5:
        return "hdf5"
    if head.startswith(b"PK\x03\x04"):
        return _zip_kind(path)
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "checkpoint"  # a pickle: torch.save's legacy format
    if head.startswith(_PNG_SIGNATURE):
        return "png"
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[4:8] == b"ftyp":
        return "mp4"
    text = head.decode("utf-8", "replace").lower()
    markers = {"<vtkfile": "vtp", "<svg": "svg", "<!doctype html": "html", "<html": "html"}
    found = [(text.find(m), kind) for m, kind in markers.items() if m in text]
    return min(found)[1] if found else "other"  # the first marker: an HTML page may embed "<svg"


def _at(f: object, offset: int) -> bytes:
    f.seek(offset)  # type: ignore[attr-defined]
    return f.read(8)  # type: ignore[attr-defined]


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (OSError, zipfile.BadZipFile):
        return "other"
    return "checkpoint" if any(n.endswith("data.pkl") or "/code/" in n for n in names) else "zip"


def check_output(path: Path, kind: str, option: str = "--out") -> None:
    """Refuse (one line) an output path that is a folder or holds a file of another kind.

    `kind` is what will be written there ("png", "html", "hdf5", "checkpoint", ...); an empty
    file or a file of the same kind may be replaced.
    """
    check_not_link(path, option)
    found = file_kind(path)
    if found is None or found in ("empty", kind):
        return
    if found == "folder":
        raise LandscapeError(f"{option} {path} is a folder; give a file name")
    raise LandscapeError(
        f"{option} {path} holds {_NAMES.get(found, found)}, not {_NAMES.get(kind, kind)}; "
        "it is left alone: choose another output path"
    )


def check_not_link(path: Path, option: str = "--out") -> None:
    """Refuse (one line) an output path that is a symbolic link: writing would replace the link
    with a file (or, through it, a file another run may own)."""
    path = Path(path)
    try:
        is_link = path.is_symlink()
    except OSError:
        return  # cannot tell (a name too long...): writing will say why
    if is_link:
        raise LandscapeError(
            f"{option} {path} is a symbolic link (to {os.path.realpath(path)}); landscape never writes "
            "through a link nor replaces it with a file: give the real path, or remove the link"
        )


def _writer_tag() -> str:
    """`<host hash>-<pid>-<start>`: who writes a temporary file (see the module docstring)."""
    host = hashlib.sha256(host_name().encode()).hexdigest()[:8]
    pid = os.getpid()
    return f"{host}-{pid}-{process_start(pid) or 0}"


_TAG = re.compile(r"([0-9a-f]{8})-([0-9]{1,10})-([0-9]{1,20})\.[A-Za-z0-9_]+\.tmp")


def remove_stale_temps(path: Path) -> list[Path]:
    """Remove the temporary files of `path` left by writers that are certainly dead on this host;
    return what was removed. Files of live writers, of other hosts, or not named by
    `atomic_write`, are left alone."""
    path = Path(path)
    prefix = f".{path.name[:_MAX_TEMP_STEM]}."
    me = _writer_tag().split("-")[0]
    removed = []
    try:
        candidates = glob.glob(glob.escape(str(path.parent / prefix)) + "*.tmp")
    except OSError:
        return removed
    for name in candidates:
        found = _TAG.fullmatch(os.path.basename(name)[len(prefix):])
        if found is None or found.group(1) != me:
            continue
        pid, start = int(found.group(2)), int(found.group(3))
        if not is_dead(host_name(), pid, start or None) or pid == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if Path(name).is_file() and not Path(name).is_symlink():
                os.unlink(name)
                removed.append(Path(name))
    return removed


def os_reason(e: OSError) -> str:
    """Why an operation on a file failed, with what to do about it, in a few words."""
    code = getattr(e, "errno", None)
    text = str(e)
    if code == errno.ENOSPC or "No space left" in text:
        return "no space left on device (free some space, or write elsewhere)"
    if code == errno.EFBIG or "File too large" in text:
        return "file too large (the disk or the file size limit, ulimit -f, is full; free space or raise it)"
    if code == errno.EROFS:
        return "read-only file system (write elsewhere)"
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied (write to a folder you can write to)"
    if code == errno.ENAMETOOLONG:
        return "file name too long (choose a shorter name)"
    if code == errno.EISDIR:
        return "it is a folder (give a file name)"
    if code == errno.ENOTDIR:
        return "a part of the path is a file, not a folder"
    if code == errno.EDQUOT:
        return "disk quota exceeded (free some space)"
    lines = text.strip().splitlines()
    return (getattr(e, "strerror", None) or (lines[0] if lines else "") or type(e).__name__)[:200]


def output_error(e: OSError, doing: str, path: Path | str) -> LandscapeError:
    """One line for an OSError on an output: `cannot <doing> <path>: <reason and fix>`."""
    return LandscapeError(f"cannot {doing} {path}: {os_reason(e)}")


def check_free_space(folder: Path, needed: int, what: str) -> None:
    """Refuse (one line) when `folder`'s file system has less than `needed` bytes free."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # cannot tell: the write itself will report
    if free < needed:
        raise LandscapeError(
            f"not enough disk space for {what}: needs {_size(needed)}, {folder} has {_size(free)} "
            "free; free some space or write elsewhere"
        )


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _make_folder(folder: Path) -> None:
    for parent in (folder, *folder.parents):
        if parent.exists() and not parent.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", str(parent))
    folder.mkdir(parents=True, exist_ok=True)


def _default_file_mode() -> int:
    """0666 minus the umask: what open() would give (mkstemp's files are private, 0600)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_write(
    path: Path, doing: str | None = None, make_folder: bool = False, keep_mode: bool = False
) -> Iterator[str]:
    """Yield an empty temporary file beside `path`; when the block ends, rename it onto `path`.

    A crash or an error leaves `path` as it was and removes the temporary file. The new file
    gets `path`'s mode with `keep_mode`, else what open() would give (mkstemp's files are
    private). With `doing`, an OSError becomes one line, `cannot <doing> <path>: <reason>`;
    without, it propagates as it is.

    Example:
        >>> with atomic_write(Path("ckpts/net.pt"), make_folder=True) as tmp:  # doctest: +SKIP
        ...     torch.save(payload, tmp)
    """
    path = Path(path)
    check_not_link(path, "output")
    try:
        if make_folder:
            _make_folder(path.parent)
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "Is a directory", str(path))
        if len(path.name.encode()) > 255:
            raise OSError(errno.ENAMETOOLONG, "File name too long", str(path))
        remove_stale_temps(path)
        stem = path.name[:_MAX_TEMP_STEM]
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{stem}.{_writer_tag()}.", suffix=".tmp")
    except OSError as e:
        if doing is None:
            raise
        raise output_error(e, doing, path) from None
    os.close(fd)
    try:
        if keep_mode:
            shutil.copymode(path, tmp)
        else:
            os.chmod(tmp, _default_file_mode())
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        if doing is None:
            raise
        raise output_error(e, doing, path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
