"""fetch(): download from a local HTTP server, verify the checksum, unzip, import."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import threading
import zipfile
from pathlib import Path
from typing import Iterator

import pytest

from thawrec.data.fetch import ML100K_MD5, ML100K_URL, fetch
from thawrec.data.schema import read_dataset
from thawrec.errors import DataError


def _zip_bytes() -> bytes:
    flags = lambda *on: "|".join("1" if i in on else "0" for i in range(19))  # noqa: E731
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ml-100k/u.data", "1\t10\t5\t881250949\n2\t20\t2\t881250950\n2\t10\t4\t881250951\n")
        zf.writestr("ml-100k/u.user", "1|24|M|technician|85711\n2|53|F|other|94043\n")
        zf.writestr("ml-100k/u.item", f"10|Toy Story (1995)|01-Jan-1995||u|{flags(3, 5)}\n"
                                      f"20|Heat (1995)|01-Jan-1995||u|{flags(1)}\n")
        zf.writestr("ml-100k/README", "tiny test archive\n")
    return buf.getvalue()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    root = tmp_path / "www"
    root.mkdir()
    data = _zip_bytes()
    (root / "ml-100k.zip").write_bytes(data)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/ml-100k.zip", data
    finally:
        httpd.shutdown()
        httpd.server_close()
        t.join(5)


def test_constants() -> None:
    assert ML100K_URL == "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
    assert ML100K_MD5 == "0e33842e24a9c977be4e0107933c0723"


@pytest.mark.parametrize("algo", ["md5", "sha256"])
def test_fetch_imports(tmp_path: Path, server: tuple[str, bytes], algo: str) -> None:
    url, data = server
    seen: list[int] = []
    rep = fetch("ml-100k", tmp_path / "out", url=url, checksum=hashlib.new(algo, data).hexdigest(), algo=algo,
                cache_dir=tmp_path / "cache", progress=lambda done, total: seen.append(done))
    assert (rep.n_users, rep.n_items, rep.n_interactions) == (2, 2, 3)
    assert seen and seen[-1] == len(data)
    ds = read_dataset(rep.out)
    assert ds.interactions["label"].to_list() == [1, 0, 1]
    assert ds.vocabs["item_id"] == [10, 20] and ds.items["year"].to_list() == [1995, 1995]
    assert [ds.vocabs["tags"][c] for c in ds.items["tags"][0]] == ["Animation", "Comedy"]
    assert ds.meta["source"]["url"] == url and ds.meta["source"]["algo"] == algo
    assert (tmp_path / "cache" / "ml-100k.zip").read_bytes() == data
    assert not list((tmp_path / "cache").glob(".*"))  # no temp files or unzip folders left behind


def test_fetch_uses_cache(tmp_path: Path, server: tuple[str, bytes]) -> None:
    url, data = server
    md5 = hashlib.md5(data).hexdigest()
    fetch("ml-100k", tmp_path / "a", url=url, checksum=md5, cache_dir=tmp_path / "cache")
    calls: list[int] = []
    rep = fetch("ml-100k", tmp_path / "b", url=url, checksum=md5, cache_dir=tmp_path / "cache",
                progress=lambda d, t: calls.append(d))
    assert calls == [] and rep.n_interactions == 3


def test_checksum_mismatch(tmp_path: Path, server: tuple[str, bytes]) -> None:
    url, data = server
    wrong = "0" * 32
    with pytest.raises(DataError) as info:
        fetch("ml-100k", tmp_path / "out", url=url, checksum=wrong, cache_dir=tmp_path / "cache")
    msg = str(info.value)
    assert wrong in msg and hashlib.md5(data).hexdigest() in msg and "expected" in msg and "got" in msg
    assert not (tmp_path / "cache" / "ml-100k.zip").exists()
    assert not list((tmp_path / "cache").iterdir())
    assert not (tmp_path / "out").exists()


def test_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="ml-100k"):
        fetch("netflix-prize", tmp_path / "out", cache_dir=tmp_path / "cache")
