"""Weights files from a local path or a URL: a download cache keyed by the whole URL, checked by sha256.

A URL is cached as ``<cache>/<sha256(url)[:16]>-<file name>``, so two URLs ending in the same file name never
share an entry. A download goes to a temporary file that replaces the cache entry only when it is complete and
its hash is right; the hash of the first download is recorded beside the file (``.sha256``) and every later
load is checked against it and against the ``sha256`` the model config states, if any. Cache directory:
``$ROBUST_SEG_CACHE``, else ``<torch hub dir>/robust_seg``.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from robust_seg.errors import CheckpointError

CHUNK = 1 << 20


@dataclass(frozen=True)
class WeightsFile:
    """A weights file as loaded: where it was asked for, where it lies, and the sha256 of its bytes."""

    location: str
    path: Path
    sha256: str


def is_url(location: str) -> bool:
    return location.startswith(("http://", "https://"))


def cache_dir() -> Path:
    if os.environ.get("ROBUST_SEG_CACHE"):
        return Path(os.environ["ROBUST_SEG_CACHE"]).expanduser()
    import torch

    return Path(torch.hub.get_dir()) / "robust_seg"


def cache_path(url: str) -> Path:
    """The cache entry of ``url``: keyed by the hash of the whole URL, named after its file for readability."""
    name = Path(urlparse(url).path).name or "checkpoint"
    return cache_dir() / f"{hashlib.sha256(url.encode()).hexdigest()[:16]}-{name}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check(actual: str, expected: str | None, what: str) -> None:
    if expected and actual.lower() != expected.strip().lower():
        raise CheckpointError(f"{what} has sha256 {actual[:16]}... but the config states {expected.strip()[:16]}...: "
                              "the file is corrupt or not the one meant (fix model.checkpoint or model.checkpoint_sha256)")


def _download(url: str, target: Path, expected: str | None) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    digest = hashlib.sha256()
    try:
        with os.fdopen(handle, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    expected_length = response.headers.get("Content-Length")
                    written = 0
                    for chunk in iter(lambda: response.read(CHUNK), b""):
                        out.write(chunk)
                        digest.update(chunk)
                        written += len(chunk)
            except OSError as error:
                raise CheckpointError(f"cannot download checkpoint {url}: {error}".splitlines()[0]) from None
            if expected_length is not None and written != int(expected_length):
                raise CheckpointError(f"download of {url} ended after {written} of {expected_length} bytes; "
                                      "run again to retry")
            out.flush()
            os.fsync(out.fileno())
        _check(digest.hexdigest(), expected, f"the download of {url}")
        os.replace(temporary, target)
    finally:
        Path(temporary).unlink(missing_ok=True)
    Path(f"{target}.sha256").write_text(digest.hexdigest() + "\n")


def resolve_weights_file(location: str, expected_sha256: str | None = None) -> WeightsFile:
    """The local file of ``location`` (downloading a URL once into the cache), its bytes checked by sha256."""
    if is_url(location):
        path = cache_path(location)
        if not path.is_file():
            _download(location, path, expected_sha256)
        actual = sha256_file(path)
        recorded = Path(f"{path}.sha256")
        if recorded.is_file() and recorded.read_text().strip() != actual:
            raise CheckpointError(f"the cached download of {location} ({path}) changed since it was downloaded "
                                  "(sha256 differs from the recorded one): delete it to download it again")
        _check(actual, expected_sha256, f"checkpoint {location} (cached as {path})")
        return WeightsFile(location, path, actual)
    path = Path(os.path.expanduser(location))
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path} (give a local file or an http(s) URL)")
    actual = sha256_file(path)
    _check(actual, expected_sha256, f"checkpoint {path}")
    return WeightsFile(location, path, actual)

