"""Download a public dataset archive, verify its checksum, unzip and import it.

The archive is streamed to a temp file while hashing; only a verified archive is moved into the
cache, so a truncated or tampered download can never be reused by a later run.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import Callable

from thawrec.data.schema import write_dataset
from thawrec.data.sources import ImportReport, load_source
from thawrec.errors import DataError

log = logging.getLogger(__name__)

ML100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
ML100K_MD5 = "0e33842e24a9c977be4e0107933c0723"  # published by GroupLens next to the zip

# name -> (default url, published checksum or None, algo, importer format)
KNOWN: dict[str, tuple[str, str | None, str, str]] = {
    "ml-100k": (ML100K_URL, ML100K_MD5, "md5", "ml-100k"),
    "ml-1m": ("https://files.grouplens.org/datasets/movielens/ml-1m.zip", None, "md5", "ml-1m"),
    "ml-20m": ("https://files.grouplens.org/datasets/movielens/ml-20m.zip", None, "md5", "ml-20m"),
}
ALGOS = ("md5", "sha256")
CHUNK = 1 << 20

Progress = Callable[[int, int | None], None]


def default_cache_dir() -> Path:
    return Path(os.environ.get("THAWREC_CACHE", Path.home() / ".cache" / "thawrec"))


def file_digest(path: Path, algo: str = "md5") -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _download(url: str, dest: Path, algo: str, progress: bool | Progress | None) -> str:
    """Stream ``url`` into ``dest`` and return its hex digest."""
    h = hashlib.new(algo)
    with urllib.request.urlopen(url, timeout=60) as resp, open(dest, "wb") as fh:  # noqa: S310 (http/https only)
        total = resp.headers.get("Content-Length")
        total_n = int(total) if total and total.isdigit() else None
        bar = task = None
        if progress is True:
            from rich.progress import Progress as RichProgress

            bar = RichProgress(transient=True)
            bar.start()
            task = bar.add_task(f"downloading {url.rsplit('/', 1)[-1]}", total=total_n)
        done = 0
        try:
            for chunk in iter(lambda: resp.read(CHUNK), b""):
                fh.write(chunk)
                h.update(chunk)
                done += len(chunk)
                if bar is not None:
                    bar.update(task, completed=done)
                elif callable(progress):
                    progress(done, total_n)
        finally:
            if bar is not None:
                bar.stop()
    return h.hexdigest()


def fetch(
    name: str,
    out: str | Path,
    *,
    url: str | None = None,
    checksum: str | None = None,
    algo: str = "md5",
    cache_dir: str | Path | None = None,
    progress: bool | Progress | None = None,
) -> ImportReport:
    """Download ``name`` (default URL/checksum for known datasets), verify, unzip, import to ``out``.

    A cached archive whose checksum still matches is reused without downloading. On mismatch the
    download is deleted and a DataError says expected vs got.
    """
    key = name.strip().lower()
    if key not in KNOWN:
        raise DataError(f"unknown dataset '{name}'", column="name", fix=f"use one of {', '.join(KNOWN)}")
    d_url, d_sum, d_algo, fmt = KNOWN[key]
    if algo not in ALGOS:
        raise DataError(f"unknown checksum algorithm '{algo}'", column="algo", fix=f"use one of {', '.join(ALGOS)}")
    if url is None:
        url = d_url
        if checksum is None and d_sum is not None:
            checksum, algo = d_sum, d_algo
    if not url.startswith(("http://", "https://")):
        raise DataError(f"unsupported URL '{url}'", column="url", fix="use an http(s) URL")
    checksum = checksum.strip().lower() if checksum else None

    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    archive = cache / url.rstrip("/").rsplit("/", 1)[-1]
    if archive.suffix != ".zip":
        archive = archive.with_name(archive.name + ".zip")

    if archive.is_file() and checksum and file_digest(archive, algo) == checksum:
        log.info("using cached %s", archive)
    else:
        fd, tmp_name = tempfile.mkstemp(prefix=".download-", suffix=".part", dir=cache)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            got = _download(url, tmp, algo, progress)
            if checksum and got != checksum:
                raise DataError(
                    f"{algo} checksum mismatch: expected {checksum}, got {got}",
                    file=url,
                    fix="the download is corrupt or the file changed upstream; retry, or pass the new checksum",
                )
            if not checksum:
                log.warning("no checksum known for %s; downloaded %s %s=%s (unverified)", url, archive.name, algo, got)
            os.replace(tmp, archive)
        finally:
            tmp.unlink(missing_ok=True)

    t0 = time.perf_counter()
    extract = Path(tempfile.mkdtemp(prefix=".unzip-", dir=cache))
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(extract)  # zipfile strips absolute paths and '..' components
        except zipfile.BadZipFile as exc:
            archive.unlink(missing_ok=True)
            raise DataError(f"not a valid zip archive: {exc}", file=str(archive), fix="retry the download") from exc
        ds = load_source(fmt, extract)
    finally:
        shutil.rmtree(extract, ignore_errors=True)
    # the extraction folder is temporary: record the archive and URL as the source instead
    ds.meta["source"] = {"format": fmt, "path": str(archive), "url": url, "checksum": checksum, "algo": algo}
    path = write_dataset(ds, out)
    rep = ImportReport(out=Path(path), n_users=ds.users.height, n_items=ds.items.height,
                       n_interactions=ds.interactions.height, filtered=dict(ds.meta.get("filtered", {})),
                       seconds=time.perf_counter() - t0, format=fmt)
    log.info(rep.summary())
    return rep
