"""What the CLI reads: JSONL or plain text lines, audio folders by extension; and chunking by size."""

from __future__ import annotations

from pathlib import Path

import pytest
from assay_client.cli.sources import InputError, audio_files, parse_lines, read_file
from assay_client.inputs import JobRequest, chunks


def texts(items) -> list[str | None]:
    return [i.request.text for i in items]


def test_jsonl_lines_with_text_and_metadata() -> None:
    items = parse_lines(['{"text": "one", "metadata": {"id": 7}}\n', "\n", '{"text": "two", "other": 1}\n'], "t.jsonl")
    assert texts(items) == ["one", "two"]
    assert [i.source for i in items] == ["t.jsonl:1", "t.jsonl:3"]  # real line numbers, blank skipped
    assert dict(items[0].request.metadata) == {"id": 7}


def test_plain_text_lines_keep_their_words_and_drop_line_ends() -> None:
    items = parse_lines(["I love it\r\n", "   \n", "  indented stays  \n", "last"], "t.txt")
    assert texts(items) == ["I love it", "  indented stays  ", "last"]
    assert [i.source for i in items] == ["t.txt:1", "t.txt:3", "t.txt:4"]


def test_the_first_line_decides_the_format_unless_told() -> None:
    assert texts(parse_lines(['"a quoted line"\n', "{not json\n"], "f")) == ['"a quoted line"', "{not json"]
    assert texts(parse_lines(['{"text": "x"}\n'], "f", "text")) == ['{"text": "x"}']
    with pytest.raises(InputError, match=r"f:1: not valid JSON"):
        parse_lines(["plain\n"], "f", "jsonl")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"txt": "typo"}', 'string "text"'),
        ('{"text": 5}', 'string "text"'),
        ("[1, 2]", 'string "text"'),
        ('{"text": "x", "metadata": [1]}', '"metadata" must be a JSON object'),
        ("not json at all", "not valid JSON"),
    ],
)
def test_a_bad_jsonl_line_is_named_by_its_number(line: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as caught:
        parse_lines(['{"text": "fine"}\n', line + "\n"], "tickets.jsonl")
    assert "tickets.jsonl:2" in str(caught.value)


def test_read_file_handles_a_bom_and_reports_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes('\ufeff{"text": "é"}\n'.encode())
    assert texts(read_file(str(path))) == ["é"]
    with pytest.raises(InputError, match="cannot read"):
        read_file(str(tmp_path / "missing.jsonl"))


def test_audio_files_by_extension_sorted_by_path(tmp_path: Path) -> None:
    for name in ("b.MP3", "a.wav", "c.opus", "notes.txt", "d.webm", "sub/e.flac", "f.m4a", "g.ogg"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found = [Path(i.source).name for i in audio_files(str(tmp_path))]
    assert found == ["a.wav", "b.MP3", "c.opus", "d.webm", "f.m4a", "g.ogg"]
    assert "e.flac" in [Path(i.source).name for i in audio_files(str(tmp_path), recursive=True)]
    assert audio_files(str(tmp_path))[0].request.audio.filename == "a.wav"  # type: ignore[union-attr]
    (tmp_path / "sub" / "e.flac").rename(tmp_path / "sub" / "e.flac.txt")
    with pytest.raises(InputError, match="no audio files"):
        audio_files(str(tmp_path / "sub"))


def test_chunks_respect_count_and_bytes_and_never_split_a_job() -> None:
    small = [JobRequest(text="x" * 10) for _ in range(5)]
    assert [len(c) for c in chunks(small, 2, 10_000)] == [2, 2, 1]
    big = [JobRequest(text="x" * 1000), JobRequest(text="y"), JobRequest(text="z" * 5000), JobRequest(text="w")]
    assert [len(c) for c in chunks(big, 100, 1500)] == [2, 1, 1]  # the 5000-byte one goes alone
    with pytest.raises(ValueError):
        list(chunks(small, 0, 10))


def test_only_newlines_end_lines(tmp_path: Path) -> None:
    """U+2028, form feeds, NEL are text: inside a JSON string, or inside a line of plain text."""
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "para one\u2028para two"}\n{"text": "b\x85c"}\n', encoding="utf-8")
    assert texts(read_file(str(path))) == ["para one\u2028para two", "b\x85c"]
    plain = tmp_path / "t.txt"
    plain.write_text("one\ntwo\x0cstill two\x85and\u2029two\r\nthree", encoding="utf-8")
    items = read_file(str(plain))
    assert texts(items) == ["one", "two\x0cstill two\x85and\u2029two", "three"]
    assert [i.source for i in items] == [f"{plain}:1", f"{plain}:2", f"{plain}:3"]


def test_stdin_is_read_as_utf8_bytes_whatever_the_locale(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    class Stdin:
        def __init__(self, data: bytes) -> None:
            self.buffer = io.BytesIO(data)

    monkeypatch.setattr(sys, "stdin", Stdin('\ufeff{"text": "café", "metadata": {"a": 1}}\n'.encode()))
    (item,) = read_file("-")
    assert (item.request.text, item.request.metadata, item.source) == ("café", {"a": 1}, "stdin:1")
    monkeypatch.setattr(sys, "stdin", Stdin(b"caf\xe9\n"))
    with pytest.raises(InputError, match="stdin is not UTF-8 text"):
        read_file("-")
