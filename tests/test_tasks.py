"""The task registry (permerge.tasks) is the one place for a task's facts: everything else agrees with it."""

import dataclasses

import pytest

from permerge import config as cfg
from permerge import tasks
from permerge.data import standins
from permerge.reporting import plots
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


def test_mlm_compat_scores_mlms_models_on_its_own_evaluation_set():
    assert tasks.base_task("mlm_compat") == "mlm" and tasks.is_mlm("mlm_compat")
    assert tasks.models_of("mlm_compat") == "mlm" and tasks.is_evaluation_only("mlm_compat")
    assert tasks.mlm_evalset("mlm_compat") == "mlm_compat"
    assert tasks.mlm_evalset("mlm") == tasks.mlm_evalset("mlm_step250") == "mlm"
    assert tasks.models_of("mlm_step250") == "mlm_step250" and not tasks.is_evaluation_only("mlm")
    assert tasks.ORDER[:2] == ("mlm", "mlm_compat") and "character-spaced" in tasks.TITLES["mlm_compat"]


def test_mlm_compat_config_checks():
    c = cfg.load_merged(overrides={"tasks": ["mlm", "mlm_compat"]})
    assert cfg.variants_for(c, "mlm_compat") == cfg.variants_for(c, "mlm")  # default: mlm's
    assert cfg.many_variants(c, "mlm_compat") == []  # the all-seed merges are mlm's
    c = cfg.load_merged(overrides={"tasks": ["mlm", "mlm_compat"], "task_variants": {"mlm_compat": ["vanilla"]}})
    assert cfg.variants_for(c, "mlm_compat") == ["vanilla"]
    bad = (
        ({"tasks": ["mlm_compat", "sst2"]}, "add 'mlm' to tasks"),
        ({"tasks": ["mlm", "mlm_compat"], "task_variants": {"mlm_compat": ["paper_glue"]}}, "unknown variant|subset"),
        (
            {
                "tasks": ["mlm", "mlm_compat"],
                "variants": {"x": {"components": ["ff"]}},
                "task_variants": {"mlm_compat": ["x"]},
            },
            r"task_variants.mlm_compat: \['x'\] do not run for 'mlm'",
        ),
        ({"tasks": ["mlm", "mlm_compat"], "data": {"mlm_eval": {"paper_compat": True}}}, "drop one"),
        ({"tasks": ["mlm", "mlm_compat"], "trajectory": {"tasks": ["mlm_compat"]}}, "evaluation-only"),
    )
    for overrides, match in bad:
        with pytest.raises(cfg.ConfigError, match=match):
            cfg.load_merged(overrides=overrides)


def test_paper_config_scores_the_papers_mlm_rows_on_character_spaced_text():
    c = cfg.load_merged(cfg.ROOT / "configs/paper.yaml")
    assert "mlm_compat" in c["tasks"] and not c["data"]["mlm_eval"]["paper_compat"]
    compat = cfg.variants_for(c, "mlm_compat")
    assert {"ff_only", "ff_attn", "ff_attn_monotonic", "ff_attn_ignore_heads"} <= set(compat)  # Table 1
    assert {"vanilla", "res_only", "res_first", "res_last"} <= set(compat)  # Table 2
    embedded = cfg.load_merged()
    assert "mlm_compat" not in embedded["tasks"]
