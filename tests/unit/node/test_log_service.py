"""The log service's pure parts: which file names may be read, whole-line chunks, task markers, and
picking one task's lines out of a shared worker log (a fake node manager, no processes)."""

from __future__ import annotations

import os
import types

import pytest

from swarm.core import protocol as P
from swarm.node import log_service as ls


@pytest.fixture
def logs_dir(tmp_path):
    d = tmp_path / "logs"
    d.mkdir()
    (d / "worker-00aa-1.out").write_bytes(b"one\ntwo\n")
    (tmp_path / "secret").write_text("not a log")
    return d


@pytest.mark.parametrize("name", ["../secret", "/etc/passwd", "..", ".", "", "sub/file", "a\0b", None, 7,
                                  "..\\secret"])
def test_names_that_are_not_bare_file_names_are_refused(logs_dir, name):
    with pytest.raises(ValueError, match="log file name|outside"):
        ls.log_file_path(str(logs_dir), name)


def test_a_link_leading_out_of_the_logs_dir_is_refused(logs_dir):
    os.symlink(logs_dir.parent / "secret", logs_dir / "sneaky.out")
    with pytest.raises(ValueError, match="outside"):
        ls.log_file_path(str(logs_dir), "sneaky.out")


def test_a_missing_file_says_how_to_find_the_files(logs_dir):
    with pytest.raises(FileNotFoundError, match="list_logs"):
        ls.log_file_path(str(logs_dir), "worker-ffff-2.out")
    os.mkdir(logs_dir / "adir")
    with pytest.raises(FileNotFoundError):
        ls.log_file_path(str(logs_dir), "adir")


def test_a_file_in_the_logs_dir_is_found(logs_dir):
    path = ls.log_file_path(str(logs_dir), "worker-00aa-1.out")
    assert path == str((logs_dir / "worker-00aa-1.out").resolve())


def test_chunks_end_on_whole_lines_and_tails_start_on_one(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"alpha\nbeta\ngamma\npartial")
    data, start, nxt, size, restarted = ls.read_chunk(str(path), 0, 8)
    assert (data, start, nxt, restarted) == (b"alpha\n", 0, 6, False)
    data, _, nxt, _, _ = ls.read_chunk(str(path), nxt, 100)
    assert data == b"beta\ngamma\n"          # the unfinished last line waits for its newline
    for back in (12, 13, 14):   # inside "gamma", at its first byte, at the newline before it
        data, start, _, _, _ = ls.read_chunk(str(path), -back, 100)
        expected = b"" if back == 12 else b"gamma\n"
        assert data == expected, back
    assert ls.read_chunk(str(path), -13, 100)[1] == size - 13
    data, start, _, _, restarted = ls.read_chunk(str(path), size + 50, 100)
    assert restarted and start == 0 and data.startswith(b"alpha")   # the file was rotated


def test_a_line_longer_than_one_read_comes_in_pieces(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 50 + b"\n")
    data, _, nxt, _, _ = ls.read_chunk(str(path), 0, 20)
    assert data == b"x" * 20 and nxt == 20


def test_a_read_is_capped_at_one_mebibyte(tmp_path):
    path = tmp_path / "f"
    path.write_bytes((b"y" * 99 + b"\n") * 20_000)
    data, _, _, _, _ = ls.read_chunk(str(path), 0, 10**9)
    assert 0 < len(data) <= ls.MAX_READ_BYTES and data.endswith(b"\n")


def worker_log(*sections: tuple[str | None, list[str]]) -> bytes:
    out = b""
    for task, lines in sections:
        out += ls.marker_line(task, "fn") if task else ls.NO_TASK_MARKER
        out += b"".join(line.encode() + b"\n" for line in lines)
    return out


def test_filter_keeps_one_tasks_lines_and_drops_markers():
    data = b"before\n" + worker_log(("aa", ["a1", "a2"]), ("bb", ["b1"]), (None, ["idle"]), ("aa", ["a3"]))
    kept, inside, seen = ls.filter_lines(data, "aa", False)
    assert kept == b"a1\na2\na3\n" and inside and seen
    kept, inside, seen = ls.filter_lines(data, None, False)
    assert kept == b"before\na1\na2\nb1\nidle\na3\n" and not seen
    assert ls.filter_lines(data, "cc", False)[0] == b""
    assert ls.filter_lines(b"cont\n", "aa", True) == (b"cont\n", True, False)   # state carries over
    blank = worker_log(("aa", ["x", "", "\x1cy\rz"]))    # blank lines and odd characters survive
    assert ls.filter_lines(blank, "aa", False)[0] == b"x\n\n\x1cy\rz\n"


def test_tag_lines_become_markers_only_when_the_task_changes():
    svc = ls.LogService(types.SimpleNamespace())
    wid = b"\x01" * 8
    assert svc.on_tag(wid, 1, "\x1ework\x1faa") == ("work", ls.marker_line("aa", "work"))
    assert svc.on_tag(wid, 1, "\x1ework\x1faa") == ("work", b"")
    assert svc.on_tag(wid, 2, "\x1ework\x1faa")[1] == ls.marker_line("aa", "work")   # per stream
    assert svc.on_tag(wid, 1, "\x1ework") == ("work", ls.NO_TASK_MARKER)
    assert svc.current_marker(wid, 2, "work") == ls.marker_line("aa", "work")   # after rotation
    assert ls.marker_task(ls.marker_line("aa", "work").rstrip(b"\n")) == "aa"


class FakeLink:
    """A NodeLink that calls a LogService directly (a node manager of only a logs dir)."""

    def __init__(self, logs_dir):
        nm = types.SimpleNamespace(logs_dir=str(logs_dir), workers={}, node_id="n1")
        self.svc = ls.LogService(nm)

    def read(self, name, offset, max_bytes=ls.MAX_READ_BYTES, task=None, inside=False):
        reply = self.svc.handle([P.READ_LOG, 1, name, offset, max_bytes, task, inside])
        if reply[2] is None:
            raise ls.LogError(reply[3])
        return reply[2]


def test_stream_log_gives_a_tasks_lines_and_the_tail(tmp_path):
    (tmp_path / "worker-00bb-2.out").write_bytes(
        worker_log(("aa", ["a1"]), ("bb", [f"b{i}" for i in range(5)]), ("aa", ["a2"])))
    link = FakeLink(tmp_path)
    assert list(ls.stream_log(link, "worker-00bb-2.out", task="bb")) == [f"b{i}" for i in range(5)]
    assert list(ls.stream_log(link, "worker-00bb-2.out", task="bb", tail=2)) == ["b3", "b4"]
    assert list(ls.stream_log(link, "worker-00bb-2.out", tail=3)) == ["b3", "b4", "a2"]
    assert list(ls.stream_log(link, "worker-00bb-2.out", tail=-1))[:2] == ["a1", "b0"]
    (tmp_path / "worker-00cc-3.out").write_bytes(worker_log(("aa", ["x\x1ey", "", "z"])))
    assert list(ls.stream_log(link, "worker-00cc-3.out", task="aa")) == ["x\x1ey", "", "z"]
    # a dead worker's file is not followed: follow returns at its end
    assert list(ls.stream_log(link, "worker-00bb-2.out", task="aa", follow=True)) == ["a1", "a2"]


def test_service_errors_name_the_problem(tmp_path):
    svc = FakeLink(tmp_path).svc
    reply = svc.handle([P.READ_LOG, 9, "../x", 0, 100, None, False])
    assert reply[:3] == [P.LOGS_REPLY, 9, None] and "not a log file name" in reply[3]
    reply = svc.handle([P.READ_LOG, 9, "x"])        # malformed request: an error, not a crash
    assert reply[2] is None and reply[3]
