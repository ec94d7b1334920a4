"""Damaged inputs fail by name: a checkpoint cut short, a corrupt header, a text file that is not UTF-8."""

import pytest
import torch
from safetensors.torch import save_file

from permerge.io import DamagedFile, check_safetensors, read_text_lines


@pytest.fixture
def good(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"a": torch.arange(100, dtype=torch.float32), "b": torch.ones(3, 4)}, str(path))
    return path


def test_complete_file_passes(good):
    check_safetensors(good)


@pytest.mark.parametrize("keep", [4, 20, -1, -100])
def test_truncated_file_is_named(good, keep):
    data = good.read_bytes()
    good.write_bytes(data[:keep])
    with pytest.raises(DamagedFile, match=str(good.name)) as err:
        check_safetensors(good)
    assert "truncated" in str(err.value) or "no header" in str(err.value)


def test_corrupt_header_and_trailing_bytes(good):
    data = bytearray(good.read_bytes())
    good.write_bytes(bytes(data) + b"xx")
    with pytest.raises(DamagedFile, match="unexpected bytes"):
        check_safetensors(good)
    data[10:14] = b"\xff\xfe\x00\x01"
    good.write_bytes(bytes(data))
    with pytest.raises(DamagedFile, match="corrupt safetensors header"):
        check_safetensors(good)


def test_non_utf8_text_names_the_line(tmp_path):
    path = tmp_path / "books.txt"
    path.write_bytes("first line\n\nsecond\nbad \xe9 byte\n".encode("latin-1"))
    with pytest.raises(DamagedFile, match=r"books.txt, line 4: not UTF-8"):
        read_text_lines(path)
    assert read_text_lines(path, max_lines=2) == ["first line", "second"]
