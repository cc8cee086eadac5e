"""The file system side of compact files: bounded reads of regular files only
(``open_regular``, ``read_bytes``: size known before anything is read, FIFOs, devices
and folders refused) and atomic writes (``write_atomic``: a temp file of the project's
own naming in the target folder, fsync, rename; the target's mode kept; stale temps of
crashed writers removed), plus the output checks the CLI runs before any work
(``check_writable``, ``same_file``)."""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
from collections.abc import Sequence

from compactnn.errors import PathError
from compactnn.io.container import CompactFileError, header_length

__all__ = ["write_atomic", "read_bytes", "open_regular", "check_writable", "same_file"]

_TMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>[0-9]+)\.[0-9a-f]{8}\.compactnn-tmp$")


def _temp_name(path: str) -> str:
    """``.<name>.<pid>.<random>.compactnn-tmp`` beside ``path`` (the project's naming)."""
    folder, base = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{base}.{os.getpid()}.{secrets.token_hex(4)}.compactnn-tmp")


def _remove_stale_temps(path: str) -> None:
    """Delete temporary files of earlier writes to ``path`` whose process is gone
    (a write killed with -9 leaves its temporary file behind)."""
    folder, base = os.path.split(os.path.abspath(path))
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        m = _TMP.match(name)
        if not m or m["name"] != base:
            continue
        pid = int(m["pid"])
        try:
            if pid != os.getpid():
                os.kill(pid, 0)
            continue  # its writer is still running
        except ProcessLookupError:
            pass
        except (PermissionError, OverflowError):
            continue
        try:
            os.unlink(os.path.join(folder, name))
        except OSError:
            pass


def check_writable(path: str | os.PathLike) -> None:
    """Raise ``PathError`` (an ``OSError``, one line) unless ``path`` can be written
    atomically: its folder exists and accepts a new file, and ``path`` is not a
    directory. Call before work."""
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise PathError(errno.ENOENT, f"output folder {folder} does not exist")
    if os.path.isdir(path):
        raise PathError(errno.EISDIR, f"output {path} is a directory")
    tmp = _temp_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise PathError(exc.errno, f"cannot write to {folder} ({exc.strerror})") from None
    os.close(fd)
    os.unlink(tmp)


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name the same existing file (same device and inode)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def write_atomic(path: str | os.PathLike,
                 data: bytes | Sequence[bytes | memoryview] | None = None, *,
                 writer=None) -> None:
    """Write ``data`` (bytes, or parts written one after the other, so that a file need
    not exist in memory as one buffer; or call ``writer(temp_path)``) to a temporary
    file in the same folder, then rename it to ``path``, so ``path`` never holds a
    partial file.

    An existing target keeps its permission bits (a new file gets ``0o666 & ~umask``);
    temporary files left by earlier killed writes to ``path`` are removed; an error
    names ``path``, never the temporary file (``PathError``, an ``OSError``).

    The one atomic writer of the package: ``save``, checkpoints and reports use it."""
    path = os.fspath(path)
    _remove_stale_temps(path)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    tmp = _temp_name(path)
    try:
        if writer is not None:
            writer(tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        else:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                for part in ([data] if isinstance(data, (bytes, bytearray)) else data):
                    f.write(part)
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        _unlink_quiet(tmp)
        raise PathError(exc.errno, f"cannot write {path} ({exc.strerror or exc})") from None
    except BaseException:
        _unlink_quiet(tmp)
        raise


def _unlink_quiet(p: str) -> None:
    try:
        os.unlink(p)
    except OSError:
        pass


def open_regular(path: str | os.PathLike, what: str = "file") -> tuple[int, int]:
    """Open ``path`` for reading without blocking and return ``(fd, size)``; only a
    regular file is accepted (never a FIFO, socket, device or directory, also not
    through a symlink), and its size is known before anything is read."""
    p = os.fspath(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise CompactFileError(f"{p}: no such {what}") from None
    except IsADirectoryError:
        raise CompactFileError(f"{p}: is a directory, not a {what}") from None
    except OSError as exc:
        raise CompactFileError(f"{p}: cannot open ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise CompactFileError(f"{p}: is a directory, not a {what}")
        if not stat.S_ISREG(st.st_mode):
            kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device"
                    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else
                    "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
            raise CompactFileError(f"{p}: is {kind}, not a regular {what}")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, int(st.st_size)


def _read_exact(fd: int, buf: memoryview, source: str) -> None:
    got = 0
    while got < len(buf):
        try:
            k = os.readv(fd, [buf[got:]])
        except OSError as exc:
            raise CompactFileError(f"{source}: cannot read ({exc.strerror})") from None
        if k == 0:
            raise CompactFileError(f"{source}: file shrank while being read")
        got += k


def read_bytes(path: str | os.PathLike) -> bytearray:
    """The file's bytes (one bounded read of its known size, after checking the
    header length against it); a missing, non-regular or unreadable file, or one
    whose header length does not fit, is a ``CompactFileError``."""
    source = os.fspath(path)
    fd, size = open_regular(path)
    try:
        if size < 8:
            raise CompactFileError(f"{source}: truncated ({size} bytes; a header needs 8)")
        first = bytearray(8)
        _read_exact(fd, memoryview(first), source)
        header_length(first, size, source)  # refuses a length the file cannot hold
        raw = bytearray(size)
        raw[:8] = first
        _read_exact(fd, memoryview(raw)[8:], source)
        return raw
    finally:
        os.close(fd)
