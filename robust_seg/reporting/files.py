"""Crash-safe files in a run directory: atomic replace for snapshots, fsync'd appends for per-batch records."""
from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import torch


def _atomic_replace(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new file, never a torn one."""
    _atomic_replace(Path(path), lambda stream: stream.write(text.encode()))


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    """``torch.save`` through a temporary file + rename (checkpoints survive a kill at any moment). A write that
    fails on a full disk is an ``OSError(ENOSPC)`` naming the file (torch's own message names neither)."""
    path = Path(path)
    try:
        _atomic_replace(path, lambda stream: torch.save(obj, stream))
    except RuntimeError as error:
        if "write" in str(error) and _disk_full(path.parent):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from None
        raise


def _disk_full(directory: Path, margin: int = 1 << 20) -> bool:
    try:
        stats = os.statvfs(directory)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < margin


def load_state(path: str | Path, what: str, fix: str, map_location: str | None = None) -> Any:
    """``torch.load(path, weights_only=True)`` of a state this project wrote; a damaged file (truncated by a full
    disk or a kill during a copy, or not a torch file) is a ``StateFileError`` naming it and ``fix``."""
    from robust_seg.errors import StateFileError

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except PermissionError:
        raise StateFileError(f"cannot read {what} {path}: permission denied (give this user read access)") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise StateFileError(f"{what} {path} is damaged ({reason[:120]}): {fix}") from None


def append_jsonl(path: str | Path, record: dict) -> None:
    """Append one JSON line and fsync it; a torn last line (kill mid-write) is dropped by :func:`read_jsonl`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as stream:
        stream.write(json.dumps(record, default=_json_default) + "\n")
        stream.flush()
        os.fsync(stream.fileno())


def read_jsonl(path: str | Path) -> Iterator[dict]:
    """Records of a JSON-lines file, skipping a torn final line."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, encoding="utf-8") as stream:
        for line in stream:
            if not line.endswith("\n"):
                break
            yield json.loads(line)


def _json_default(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
