"""Reading files that a user or a manifest names: inside their folder, regular, bounded.

A run folder's manifest names the files to read. A hostile or damaged one can name
``../../etc/passwd``, an absolute path, a link out of the folder, a FIFO that blocks forever,
or a tensor file whose zip members inflate to gigabytes. Every read goes through here:

- :func:`inside` resolves a name (links included) and refuses anything outside its folder;
- :func:`read_regular` opens without blocking, refuses what is not a regular file, and reads
  at most the size allowed (checked on the open file before reading);
- :func:`check_stored_zip` refuses a tensor file with compressed members before
  ``torch.load`` could inflate them (``torch.save`` stores its members uncompressed).

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "a.txt").write_bytes(b"hello")
    >>> read_regular(inside(folder, "a.txt", "file"), limit=5)
    b'hello'
    >>> inside(folder, "../a.txt", "file")
    Traceback (most recent call last):
    ValueError: file '../a.txt' is not a plain name inside the folder: no '..' and no absolute path
"""

from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path

__all__ = ["check_stored_zip", "inside", "read_regular"]

_CHUNK = 1 << 20


def inside(folder: str | os.PathLike, name, what: str) -> Path:
    """``folder / name`` once it is known to stay inside ``folder``, links resolved.

    ``what`` names the entry in messages (``"snapshot file for epoch 3"``). The path outside
    is never opened, so nothing about it (size, content) reaches a message.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what} must be a file name (a non-empty str); got {name!r}")
    parts = Path(name).parts
    if Path(name).is_absolute() or ".." in parts or "\\" in name:
        raise ValueError(
            f"{what} {name!r} is not a plain name inside the folder: no '..' and no absolute path"
        )
    root = Path(folder).resolve()
    path = root / name
    if not path.resolve().is_relative_to(root):
        raise ValueError(f"{what} {name!r} is a link that leads out of the folder {folder}")
    return path


def read_regular(path: str | os.PathLike, limit: int | None = None) -> bytes:
    """The bytes of ``path``, a regular file of at most ``limit`` bytes (None: its own size).

    Opens without blocking (a FIFO or a device never hangs the reader) and checks the open
    file, so what is checked is what is read.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(
                f"{path} is not a regular file (a FIFO, device or folder): give the path of a "
                "file (in a folder: folder/name.pt)"
            )
        limit = info.st_size if limit is None else limit
        if info.st_size > limit:
            raise ValueError(f"{path} has {info.st_size:,} bytes where at most {limit:,} are read")
        chunks, left = [], limit + 1  # one byte more: a file that grew is caught too
        while left > 0 and (chunk := os.read(fd, min(_CHUNK, left))):
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        raise ValueError(f"{path} grew beyond {limit:,} bytes while it was read")
    return data


def check_stored_zip(data: bytes, what: str) -> None:
    """Refuses a zip-format tensor file with compressed members (they could inflate without
    bound); ``torch.save`` writes stored members, so real files always pass.

    Example:
        >>> import torch
        >>> buffer = io.BytesIO()
        >>> torch.save({"w": torch.zeros(3)}, buffer)
        >>> check_stored_zip(buffer.getvalue(), "weights")
    """
    if not data.startswith(b"PK"):
        return  # not a zip: torch's legacy format, which weights-only loading reads as is
    try:
        members = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except zipfile.BadZipFile:
        return  # damaged: torch.load says so in its own words
    packed = [m.filename for m in members if m.compress_type != zipfile.ZIP_STORED]
    claimed = sum(m.file_size for m in members)
    if packed or claimed > len(data):
        raise ValueError(
            f"{what} has compressed members ({', '.join(packed[:3]) or 'sizes beyond the file'}: "
            f"{claimed:,} bytes claimed in a {len(data):,}-byte file); torch.save never writes "
            "those, so it was not inflated"
        )


def check_output_path(flag: str, path: str | os.PathLike, kind: str = "folder") -> Path:
    """``path`` checked as a place to write a ``kind`` (``"folder"`` or ``"file"``) before any
    work starts: a ValueError saying what was given and what to do, else the path.

    The deepest part of ``path`` that exists must be a folder this process may write to, and
    ``path`` itself, when it exists, must be of the right kind.

    Example:
        >>> import tempfile
        >>> afile = Path(tempfile.mkdtemp()) / "notes.txt"
        >>> _ = afile.write_text("x")
        >>> try:
        ...     check_output_path("--out", afile / "run")
        ... except ValueError as err:
        ...     print(str(err).split(": ", 1)[1][:45])
        'notes.txt' is a file, so no folder can be ma
    """
    path = Path(path)
    given = f"{flag} {str(path)!r}"
    if path.exists():
        if kind == "folder" and not path.is_dir():
            raise ValueError(
                f"{given} is a file, not a folder; pass a new or existing folder (e.g. runs/one)"
            )
        if kind == "file" and path.is_dir():
            raise ValueError(f"{given} is a folder; pass a file name inside it (e.g. top.pt)")
    existing = path if path.exists() else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(
            f"{given}: {existing.name!r} is a file, so no {kind} can be made inside it; choose "
            "a path in a folder"
        )
    if not os.access(existing, os.W_OK):
        raise ValueError(
            f"{given}: the folder {str(existing)!r} is not writable; choose a {kind} in a folder "
            "you can write to"
        )
    return path
