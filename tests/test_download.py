"""`tf_esimcse.data.download`: offline, against fixture files this test writes, served through
`file://` URLs and a `http.server` on 127.0.0.1 (Range support, 404s, a broken-off transfer)."""
import hashlib
import http.server
import io
import json
import pathlib
import re
import tarfile
import threading
import zipfile

import pytest

from tf_esimcse import cli, commands
from tf_esimcse.data import download as dl
from tf_esimcse.data.senteval import read_sick, read_sts_year, resolve_senteval_dir
from tf_esimcse.errors import TfEsimcseError

NLI = ("sent0,sent1,hard_neg\n" + "".join(f"a man sits {i},a person sits {i},nobody sits {i}\n" for i in range(400))).encode()
WIKI = "".join(f"Sentence number {i} of the tiny wiki corpus, with ünïcödé.\n" for i in range(3000)).encode()


def _sha(data):
    return hashlib.sha256(data).hexdigest()


def _file_url(path):
    return pathlib.Path(path).resolve().as_uri()


class _Server:
    """A threaded HTTP server on 127.0.0.1 serving `files` (URL path -> bytes).

    `dead`: paths answered with 404. `ranges`: honour `Range: bytes=N-` with 206. `cut_once`:
    paths whose first full response stops halfway (the Content-Length promises everything).
    `requests` records (path, Range header) of every GET.
    """

    def __init__(self, files, dead=(), ranges=True, cut_once=()):
        self.files, self.dead, self.ranges = dict(files), set(dead), ranges
        self.cut_once = set(cut_once)
        self.requests = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                range_header = self.headers.get("Range")
                server.requests.append((self.path, range_header))
                if self.path in server.dead or self.path not in server.files:
                    self.send_error(404, "Not Found")
                    return
                data = server.files[self.path]
                match = re.fullmatch(r"bytes=(\d+)-", range_header or "")
                if server.ranges and match:
                    start = int(match.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                    body = data[start:]
                else:
                    self.send_response(200)
                    body = data
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.path in server.cut_once:
                    server.cut_once.discard(self.path)
                    body = body[: len(body) // 2]
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def _write_tiny_senteval(root, pairs=4):
    """`root/STS/STS1x-en-test/...`, `root/STS/STSBenchmark/...`, `root/SICK/...` (SentEval's
    downstream layout, as tests/test_cli.py's write_tiny_senteval writes under senteval/)."""
    root = pathlib.Path(root)
    for year in ("STS12", "STS13", "STS14", "STS15", "STS16"):
        year_dir = root / "STS" / f"{year}-en-test"
        year_dir.mkdir(parents=True)
        (year_dir / "STS.input.alpha.txt").write_text("".join(f"a cat {i}\ta dog {i}\n" for i in range(pairs)))
        (year_dir / "STS.gs.alpha.txt").write_text("".join(f"{i % 5}.0\n" for i in range(pairs)))
    stsb = root / "STS" / "STSBenchmark"
    stsb.mkdir(parents=True)
    for split in ("dev", "test"):
        (stsb / f"sts-{split}.csv").write_text(
            "".join(f"main-captions\tMSRvid\t2012test\t{i:04d}\t{i % 5}.0\ta cat {i}\ta dog {i}\n" for i in range(pairs))
        )
    (root / "SICK").mkdir()
    (root / "SICK" / "SICK_test_annotated.txt").write_text(
        "pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment\n"
        + "".join(f"{i}\ta cat {i}\ta dog {i}\t{1 + i % 4}.0\tNEUTRAL\n" for i in range(pairs))
    )
    return root


def _senteval_tar_gz(tmp_path, top=None):
    """A .tar.gz of the tiny layout; members under `top/` when given (else STS/, SICK/ at the root)."""
    src = _write_tiny_senteval(tmp_path / "senteval_src")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in ("STS", "SICK"):
            tar.add(src / name, arcname=f"{top}/{name}" if top else name)
    return buf.getvalue()


def _source(filename, urls, data=None, sha="pin", **kwargs):
    return dl.Source(filename=filename, urls=tuple(urls), sha256=_sha(data) if sha == "pin" else sha, **kwargs)


def _served_file(tmp_path, name, data):
    path = tmp_path / "srv" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return _file_url(path)


def _leftovers(dest):
    return sorted(p.name for p in pathlib.Path(dest).iterdir())


def test_pinned_sha256_download_lands_in_place(tmp_path, capsys):
    url = _served_file(tmp_path, "nli_for_simcse.csv", NLI)
    sources = {"nli": _source("nli_for_simcse.csv", [url], NLI, check="nli_csv")}
    placed = dl.download("nli", tmp_path / "data", sources=sources)
    assert placed == {"nli": tmp_path / "data" / "nli_for_simcse.csv"}
    assert placed["nli"].read_bytes() == NLI
    assert _leftovers(tmp_path / "data") == ["nli_for_simcse.csv"]  # no .part
    out = capsys.readouterr().out
    assert "sha256 verified" in out and url in out

    # Present and verified: skipped (nothing fetched; the source file can even be gone).
    (tmp_path / "srv" / "nli_for_simcse.csv").unlink()
    dl.download("nli", tmp_path / "data", sources=sources)
    assert "present, sha256 verified; skipped" in capsys.readouterr().out


def test_wrong_sha256_fails_and_leaves_nothing(tmp_path):
    url = _served_file(tmp_path, "wiki1m_for_simcse.txt", WIKI)
    wrong = "0" * 64
    sources = {"wiki1m": _source("wiki1m_for_simcse.txt", [url], sha=wrong)}
    with pytest.raises(dl.ChecksumError) as info:
        dl.download("wiki1m", tmp_path / "data", sources=sources)
    message = str(info.value)
    assert "wiki1m_for_simcse.txt" in message and wrong in message and _sha(WIKI) in message
    assert "\n" not in message
    assert _leftovers(tmp_path / "data") == []


def test_existing_file_with_wrong_pinned_hash_is_replaced(tmp_path, capsys):
    url = _served_file(tmp_path, "wiki1m_for_simcse.txt", WIKI)
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "wiki1m_for_simcse.txt").write_bytes(WIKI[:100])
    dl.download("wiki1m", dest, sources={"wiki1m": _source("wiki1m_for_simcse.txt", [url], WIKI)})
    assert (dest / "wiki1m_for_simcse.txt").read_bytes() == WIKI
    assert "downloading again" in capsys.readouterr().out


def test_unpinned_download_prints_its_sha256(tmp_path, capsys):
    url = _served_file(tmp_path, "wiki1m_for_simcse.txt", WIKI)
    dl.download("wiki1m", tmp_path / "data", sources={"wiki1m": _source("wiki1m_for_simcse.txt", [url], sha=None)})
    assert (tmp_path / "data" / "wiki1m_for_simcse.txt").read_bytes() == WIKI
    out = capsys.readouterr().out
    assert _sha(WIKI) in out and "not pinned" in out


def test_resume_from_partial_part_uses_range(tmp_path, capsys):
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "wiki1m_for_simcse.txt.part").write_bytes(WIKI[:1000])
    with _Server({"/wiki1m_for_simcse.txt": WIKI}) as server:
        sources = {"wiki1m": _source("wiki1m_for_simcse.txt", [server.url("/wiki1m_for_simcse.txt")], WIKI)}
        dl.download("wiki1m", dest, sources=sources)
    assert server.requests == [("/wiki1m_for_simcse.txt", "bytes=1000-")]
    assert (dest / "wiki1m_for_simcse.txt").read_bytes() == WIKI
    assert _leftovers(dest) == ["wiki1m_for_simcse.txt"]
    assert "resuming at 1000 B" in capsys.readouterr().out


def test_server_ignoring_range_restarts_from_zero(tmp_path, capsys):
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "wiki1m_for_simcse.txt.part").write_bytes(b"garbage that must not survive")
    with _Server({"/w.txt": WIKI}, ranges=False) as server:
        sources = {"wiki1m": _source("wiki1m_for_simcse.txt", [server.url("/w.txt")], WIKI)}
        dl.download("wiki1m", dest, sources=sources)
    assert server.requests[0][1] is not None  # it was asked for a range, and ignored it
    assert (dest / "wiki1m_for_simcse.txt").read_bytes() == WIKI
    assert "ignored the range request, restarting" in capsys.readouterr().out


def test_complete_part_answered_416_restarts(tmp_path, capsys):
    (tmp_path / "wiki1m_for_simcse.txt.part").write_bytes(WIKI)
    with _Server({"/w.txt": WIKI}) as server:
        sources = {"wiki1m": _source("wiki1m_for_simcse.txt", [server.url("/w.txt")], WIKI)}
        dl.download("wiki1m", tmp_path, sources=sources)
    assert [r for _, r in server.requests] == [f"bytes={len(WIKI)}-", None]
    assert (tmp_path / "wiki1m_for_simcse.txt").read_bytes() == WIKI
    assert "HTTP 416" in capsys.readouterr().out


def test_bad_part_then_pinned_mismatch_downloads_again_from_zero(tmp_path, capsys):
    (tmp_path / "wiki1m_for_simcse.txt.part").write_bytes(b"X" * 500)  # not WIKI's first bytes
    with _Server({"/w.txt": WIKI}) as server:
        sources = {"wiki1m": _source("wiki1m_for_simcse.txt", [server.url("/w.txt")], WIKI)}
        dl.download("wiki1m", tmp_path, sources=sources)
    assert [r for _, r in server.requests] == ["bytes=500-", None]
    assert (tmp_path / "wiki1m_for_simcse.txt").read_bytes() == WIKI
    assert "sha256 mismatch after resuming" in capsys.readouterr().out


def test_broken_off_transfer_is_resumed(tmp_path):
    with _Server({"/w.txt": WIKI}, cut_once={"/w.txt"}) as server:
        sources = {"wiki1m": _source("wiki1m_for_simcse.txt", [server.url("/w.txt")], WIKI)}
        dl.download("wiki1m", tmp_path, sources=sources)
    assert [r for _, r in server.requests] == [None, f"bytes={len(WIKI) // 2}-"]
    assert (tmp_path / "wiki1m_for_simcse.txt").read_bytes() == WIKI


def test_dead_primary_falls_back_to_alternative(tmp_path, capsys):
    with _Server({"/mirror/nli.csv": NLI}, dead={"/primary/nli.csv"}) as server:
        urls = [server.url("/primary/nli.csv"), server.url("/mirror/nli.csv")]
        dl.download("nli", tmp_path, sources={"nli": _source("nli_for_simcse.csv", urls, NLI, check="nli_csv")})
    assert [p for p, _ in server.requests] == ["/primary/nli.csv", "/mirror/nli.csv"]
    assert (tmp_path / "nli_for_simcse.csv").read_bytes() == NLI


def test_html_page_instead_of_data_falls_back(tmp_path):
    page = b"<!DOCTYPE html><html><body>Sign in</body></html>"
    urls = [_served_file(tmp_path, "login.html", page), _served_file(tmp_path, "nli.csv", NLI)]
    dl.download("nli", tmp_path / "data", sources={"nli": _source("nli_for_simcse.csv", urls, sha=None, check="nli_csv")})
    assert (tmp_path / "data" / "nli_for_simcse.csv").read_bytes() == NLI


def test_all_urls_dead_lists_them(tmp_path):
    with _Server({}) as server:
        urls = [server.url("/a/wiki.txt"), server.url("/b/wiki.txt")]
        sources = {"wiki1m": _source("wiki1m_for_simcse.txt", urls, sha=None, hint="get it from the moon")}
        with pytest.raises(dl.DownloadError) as info:
            dl.download("wiki1m", tmp_path / "data", sources=sources)
    message = str(info.value)
    assert message.startswith("wiki1m: could not download wiki1m_for_simcse.txt")
    assert all(u in message for u in urls) and message.count("HTTP 404") == 2
    assert "alternatively: get it from the moon" in message and "\n" not in message
    assert _leftovers(tmp_path / "data") == []


def test_unreachable_file_url_is_a_clear_error(tmp_path):
    url = _file_url(tmp_path / "missing.txt")
    with pytest.raises(TfEsimcseError, match="could not download .*missing.txt"):
        dl.download("wiki1m", tmp_path / "data", sources={"wiki1m": _source("wiki1m_for_simcse.txt", [url], sha=None)})


@pytest.mark.parametrize("top", [None, "downstream"])
def test_senteval_tar_gz_extracts_to_reader_layout(tmp_path, capsys, top):
    archive = _senteval_tar_gz(tmp_path, top=top)
    url = _served_file(tmp_path, "senteval.tar.gz", archive)
    sources = {"senteval": _source("senteval.tar.gz", [url], archive, extract_to="senteval", check="senteval")}
    dest = tmp_path / "data"
    (dest / "senteval" / "stsbenchmark").mkdir(parents=True)  # a user's own entry: kept
    dl.download("senteval", dest, sources=sources)
    assert resolve_senteval_dir(dest) == dest / "senteval"
    assert list(read_sts_year(dest, "STS12")) == ["alpha"] and len(read_sick(dest, "test").scores) == 4
    assert (dest / "senteval" / "stsbenchmark").is_dir()
    assert _leftovers(dest) == ["senteval"]  # archive deleted, temporary folder gone
    record = json.loads((dest / "senteval" / dl.RECORD_NAME).read_text())
    assert record["sha256"] == _sha(archive) and record["url"] == url and record["entries"] == ["SICK", "STS"]
    capsys.readouterr()

    dl.download("senteval", dest, sources=sources)  # verified by its record: skipped
    assert "sha256 verified); skipped" in capsys.readouterr().out

    (dest / "senteval" / "STS" / "extra.txt").write_text("stale")
    dl.download("senteval", dest, sources=sources, force=True)  # replaced
    assert not (dest / "senteval" / "STS" / "extra.txt").exists()
    assert resolve_senteval_dir(dest) == dest / "senteval"


def test_archive_without_senteval_layout_is_refused(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("README.txt", "nothing here")
    url = _served_file(tmp_path, "senteval.zip", buf.getvalue())
    sources = {"senteval": _source("senteval.zip", [url], sha=None, extract_to="senteval", check="senteval")}
    with pytest.raises(dl.DownloadError, match="STS/ and SICK/"):
        dl.download("senteval", tmp_path / "data", sources=sources)
    assert _leftovers(tmp_path / "data") == []


def test_zip_with_parent_member_is_refused(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("STS/ok.txt", "fine")
        z.writestr("../evil", "pwned")
    url = _served_file(tmp_path, "senteval.zip", buf.getvalue())
    sources = {"senteval": _source("senteval.zip", [url], buf.getvalue(), extract_to="senteval", check="senteval")}
    dest = tmp_path / "data"
    with pytest.raises(dl.UnsafeArchiveError, match=r"'\.\./evil'"):
        dl.download("senteval", dest, sources=sources)
    assert not (tmp_path / "evil").exists() and _leftovers(dest) == []


@pytest.mark.parametrize("kind", ["absolute", "symlink"])
def test_tar_with_unsafe_member_is_refused(tmp_path, kind):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("/tmp/evil" if kind == "absolute" else "STS/link")
        if kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info, io.BytesIO(b""))
    archive = tmp_path / "senteval.tar"
    archive.write_bytes(buf.getvalue())
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(dl.UnsafeArchiveError, match="absolute path" if kind == "absolute" else "is a link"):
        dl.extract_archive(archive, out)
    assert list(out.iterdir()) == []


def test_what_parsing():
    assert dl.parse_what(None) == ["senteval", "wiki1m", "nli"]
    assert dl.parse_what(" nli , wiki1m,nli,") == ["nli", "wiki1m"]
    assert dl.parse_what("all") == ["senteval", "wiki1m", "nli"]
    with pytest.raises(dl.DownloadError) as info:
        dl.parse_what("wiki1m,sts")
    assert str(info.value) == ("unknown item 'sts' in --what; expected a comma-separated list of: "
                               "senteval, wiki1m, nli (or all)")
    with pytest.raises(dl.DownloadError, match="--what is empty"):
        dl.parse_what(" , ")


def test_default_sources_are_unpinned_and_complete():
    assert set(dl.SOURCES) == {"senteval", "wiki1m", "nli"}
    for source in dl.SOURCES.values():
        assert source.sha256 is None  # not pinned yet: see the module docstring
        assert len(source.urls) == 1 and source.urls[0].startswith("https://huggingface.co/") and source.hint
    assert dl.SOURCES["senteval"].extract_to == "senteval"


def test_bad_pinned_hash_format_is_rejected(tmp_path):
    with pytest.raises(dl.DownloadError, match="64 lowercase hex"):
        dl.download("nli", tmp_path, sources={"nli": _source("n.csv", ["file:///x"], sha="ABC")})


def _parser():
    return cli.build_parser()


def test_cmd_download_data_through_argparse(tmp_path, monkeypatch, capsys):
    with _Server({"/wiki.txt": WIKI, "/nli.csv": NLI}) as server:
        monkeypatch.setattr(dl, "SOURCES", {
            "wiki1m": _source("wiki1m_for_simcse.txt", [server.url("/wiki.txt")], WIKI),
            "nli": _source("nli_for_simcse.csv", [server.url("/nli.csv")], NLI, check="nli_csv"),
        })
        dest = tmp_path / "data"
        args = _parser().parse_args(["download-data", "--dest", str(dest)])
        assert args.what is None and args.force is False and args.fn == "cmd_download_data"
        assert commands.cmd_download_data(args) == 0
        assert (dest / "wiki1m_for_simcse.txt").read_bytes() == WIKI
        assert (dest / "nli_for_simcse.csv").read_bytes() == NLI
        assert "done: wiki1m ->" in capsys.readouterr().out

        args = _parser().parse_args(["download-data", "--dest", str(dest), "--what", "nli"])
        assert commands.cmd_download_data(args) == 0 and len(server.requests) == 2  # present: nothing fetched
        args = _parser().parse_args(["download-data", "--dest", str(dest), "--what", "nli", "--force"])
        assert commands.cmd_download_data(args) == 0 and server.requests[-1] == ("/nli.csv", None)
        assert len(server.requests) == 3

        args = _parser().parse_args(["download-data", "--dest", str(dest), "--what", "nli,bogus"])
        with pytest.raises(TfEsimcseError, match="unknown item 'bogus'.*wiki1m, nli"):
            commands.cmd_download_data(args)


def test_dest_is_required():
    with pytest.raises(SystemExit):
        _parser().parse_args(["download-data"])
