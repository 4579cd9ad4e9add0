"""Crash-safe JSONL: a torn last line is dropped on read and truncated before appending."""

from __future__ import annotations

import json
import threading

import pytest

from vara.errors import InputError
from vara.records import JsonlWriter, read_jsonl, write_json_atomic


def test_torn_tail_is_ignored_then_repaired(tmp_path):
    path = tmp_path / "p.jsonl"
    with JsonlWriter(path) as w:
        w.append({"clip_id": "a"})
        w.append({"clip_id": "b"})
    with open(path, "ab") as fh:
        fh.write(b'{"clip_id": "c", "lab')  # a writer killed mid-line
    assert [r["clip_id"] for r in read_jsonl(path)] == ["a", "b"]
    with JsonlWriter(path) as w:  # reopening truncates the torn line
        w.append({"clip_id": "c"})
    assert [r["clip_id"] for r in read_jsonl(path)] == ["a", "b", "c"]
    assert path.read_bytes().count(b"\n") == 3


def test_concurrent_appends_do_not_interleave(tmp_path):
    path = tmp_path / "p.jsonl"
    with JsonlWriter(path) as w:

        def work(k):
            for i in range(50):
                w.append({"k": k, "i": i, "pad": "x" * 5000})

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    rows = read_jsonl(path)
    assert len(rows) == 200 and all(len(r["pad"]) == 5000 for r in rows)


def test_corrupt_middle_line_is_named(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"a": 1}\nnot json\n{"a": 2}\n')
    with pytest.raises(InputError, match="line 2 is not JSON"):
        read_jsonl(path)


def test_write_json_atomic(tmp_path):
    path = tmp_path / "x.json"
    write_json_atomic(path, {"a": [1, 2]})
    assert json.loads(path.read_text()) == {"a": [1, 2]}
    assert not (tmp_path / "x.json.tmp").exists()
