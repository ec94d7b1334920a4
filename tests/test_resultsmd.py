"""`permerge results`: the README's markdown tables from a run's TSV tables."""

import pytest

from permerge.evaluation.barriers import SUMMARY_COLUMNS, write_tsv
from permerge.reporting.resultsmd import render


def _summary_row(task, variant, mean, se, vs=None):
    row = dict.fromkeys(SUMMARY_COLUMNS, "")
    row.update(task=task, variant=variant, mean=mean, se=se, n=10, barrier_true_mean=mean, barrier_true_se=se)
    row["max_rel_diff_b"] = 6e-8
    if vs is not None:
        row.update(vs_vanilla_mean=vs[0], vs_vanilla_se=vs[1], below_vanilla=vs[2])
    return row


def test_render_tables(tmp_path):
    tables = tmp_path / "tables"
    tables.mkdir()
    summary = [
        _summary_row("mlm", "vanilla", 0.7, 0.07),
        _summary_row("mlm", "all", 0.3, 0.04, (-0.4, 0.05, "10/10")),
        _summary_row("sst2", "vanilla", 0.2, 0.02),
        _summary_row("sst2", "all", 0.25, 0.03, (0.05, 0.01, "2/10")),
    ]
    write_tsv(summary, tables / "summary.tsv", SUMMARY_COLUMNS)
    ft = [
        {"task": "sst2", "metric": "accuracy", "n": 5, "mean": 0.84, "se": 0.01, "min": 0.8, "max": 0.86}
        | {"chance": 0.5, "bow": 0.857, "target": 0.678, "learnt": "yes"}
    ]
    write_tsv(ft, tables / "finetune_summary.tsv", list(ft[0]))
    md = render(tmp_path)
    assert "| sst2 | accuracy | 0.840 ± 0.010 | 0.500 | 0.857 | 0.678 | yes | 0.200 ± 0.020 | 0.250 ± 0.030 |" in md
    assert "+0.050 ± 0.010 (2/10)" in md
    assert "| `all` | 0.300 ± 0.040 | 0.300 ± 0.040 | −0.400 ± 0.050 (10/10) | 6.0e-08 |" in md
    assert "Barrier vs pre-training step" not in md  # no trajectory table in this run


def test_render_needs_a_summary(tmp_path):
    with pytest.raises(ValueError, match="summary.tsv"):
        render(tmp_path)


def test_mlm_compat_rows_get_their_own_table(tmp_path):
    tables = tmp_path / "tables"
    tables.mkdir()
    summary = [
        _summary_row("mlm", "vanilla", 0.7, 0.07),
        _summary_row("mlm_compat", "vanilla", 4.5, 0.2),
        _summary_row("mlm_compat", "ff_attn", 3.9, 0.2, (-0.6, 0.1, "9/10")),
        _summary_row("sst2", "vanilla", 0.2, 0.02),
    ]
    write_tsv(summary, tables / "summary.tsv", SUMMARY_COLUMNS)
    ft = [
        {"task": "sst2", "metric": "accuracy", "n": 5, "mean": 0.84, "se": 0.01, "min": 0.8, "max": 0.86}
        | {"chance": 0.5, "bow": 0.857, "target": 0.678, "learnt": "yes"}
    ]
    write_tsv(ft, tables / "finetune_summary.tsv", list(ft[0]))
    md = render(tmp_path)
    glue, rest = md.split("### MLM\n", 1)
    assert "ff_attn" not in glue  # not a GLUE column
    mlm, compat = rest.split("character-spaced", 1)
    assert "4.500" not in mlm and "| `ff_attn` | 3.900 ± 0.200 |" in compat
