"""The task registry (permerge.tasks) is the one place for a task's facts: everything else agrees with it."""

import dataclasses

import pytest

from permerge import config as cfg
from permerge import plots, tasks
from permerge.data import standins
from tests import hub_fixtures


def test_standins_cover_exactly_the_registry():
    assert list(standins.TASKS) == list(tasks.GLUE_TASKS) == list(standins.BUILDERS)
    for name, info in standins.TASKS.items():
        reg = tasks.TASKS[name]
        for f in dataclasses.fields(tasks.Task):
            assert getattr(info, f.name) == getattr(reg, f.name), (name, f.name)
        assert set(info.sizes) == set(reg.splits) and info.sources, name


def test_registry_is_consistent():
    for t in tasks.TASKS.values():
        assert t.eval_split in t.splits and "train" in t.splits, t.name
        assert (t.num_labels == 1) == (t.metric == "pearson") == (t.label_names == ()), t.name
        assert t.num_labels == 1 or len(t.label_names) == t.num_labels, t.name
        assert 1 <= len(t.text_keys) <= 2
    assert tasks.ORDER[0] == "mlm" and tasks.TITLES["mnli"] == "MNLI-mm"
    assert tasks.split_signatures()[("train", "validation")][0] == "qqp"


def test_plots_and_config_follow_the_registry():
    assert plots.TASK_ORDER == list(tasks.ORDER) and plots.TASK_TITLES == tasks.TITLES


def test_hub_fixture_glue_has_the_registrys_columns_and_splits():
    for name, (columns, labels, splits) in hub_fixtures.GLUE.items():
        reg = tasks.TASKS[name]
        assert columns == reg.text_keys and tuple(labels) == reg.label_names
        assert set(reg.splits) <= set(splits), name


def test_unknown_task_is_named():
    c = cfg.load_merged()
    c["tasks"] = ["mlm", "wnli"]
    with pytest.raises(cfg.ConfigError, match=r"tasks\[1\] = 'wnli': unknown task"):
        cfg.validate_config(c)
    c = cfg.load_merged()
    c["task_variants"]["wnli"] = ["vanilla"]
    with pytest.raises(cfg.ConfigError, match="task_variants.wnli"):
        cfg.validate_config(c)
    with pytest.raises(KeyError, match="known: mnli"):
        tasks.glue_task("wnli")
