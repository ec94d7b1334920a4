"""permerge.io.resumable_folder: a job over many pairs that is interrupted keeps what it finished, for a retry
of the same job only, and its output folder appears whole or not at all."""

import logging

import pytest

from permerge.io import atomic_path, inputs_fingerprint, resumable_folder


def test_a_retry_of_the_same_job_keeps_its_files_and_another_job_starts_afresh(tmp_path, caplog):
    out = tmp_path / "losses" / "seeds1-2-3"
    job = {"params": {"lambdas": [0, 1]}, "inputs": []}
    with pytest.raises(KeyboardInterrupt):
        with resumable_folder(out, job) as work:
            with atomic_path(work / "seed1-seed2.tsv") as tmp:
                tmp.write_text("done\n")
            raise KeyboardInterrupt  # killed during the second pair
    assert not out.exists()
    with caplog.at_level(logging.INFO), resumable_folder(out, job, logging.getLogger("t")) as work:
        assert (work / "seed1-seed2.tsv").read_text() == "done\n"
        (work / "seed1-seed3.tsv").write_text("new\n")
    assert "1 file(s) from an interrupted try kept: seed1-seed2.tsv" in caplog.text
    assert sorted(p.name for p in out.iterdir()) == ["seed1-seed2.tsv", "seed1-seed3.tsv"]  # no fingerprint
    assert [p.name for p in tmp_path.joinpath("losses").iterdir()] == ["seeds1-2-3"]

    # another job (other params) at the same place does not trust the leftovers of an interrupted try
    with pytest.raises(KeyboardInterrupt):
        with resumable_folder(out, job) as work:
            (work / "seed2-seed3.tsv").write_text("old settings\n")
            raise KeyboardInterrupt
    assert sorted(p.name for p in out.iterdir()) == ["seed1-seed2.tsv", "seed1-seed3.tsv"]  # untouched
    with resumable_folder(out, {**job, "params": {"lambdas": [0, 0.5, 1]}}) as work:
        assert [p.name for p in work.iterdir()] == ["fingerprint.json"]
        (work / "seed1-seed2.tsv").write_text("redone\n")
    assert [p.name for p in out.iterdir()] == ["seed1-seed2.tsv"]  # the new folder replaced the old whole


def test_the_inputs_fingerprint_changes_with_a_file_of_a_folder(tmp_path):
    model = tmp_path / "seed1"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"x" * 10)
    before = inputs_fingerprint([model])
    assert before == inputs_fingerprint([model])
    (model / "model.safetensors").write_bytes(b"y" * 11)
    assert inputs_fingerprint([model]) != before
