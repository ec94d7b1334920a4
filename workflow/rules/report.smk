# Barrier tables and figures: the user-facing end of the pipeline.


LOSS_FILES = [f for task in TASKS for f in loss_files(task)]  # each inside its cohort folder
TRAJECTORY_LOSS_FILES = trajectory_loss_files()


localrules:
    merged,
    tabulate_barriers,
    plot_barriers,
    tabulate_finetuning,
    bow_baseline,
    tabulate_trajectory,


rule tabulate_barriers:
    input:
        losses=folders(LOSS_FILES),
    output:
        barriers=report(
            res("tables/barriers.tsv"),
            caption="../report/barriers.rst",
            category="Tables",
            labels={"table": "barriers per pair"},
        ),
        summary=report(
            res("tables/summary.tsv"),
            caption="../report/summary.rst",
            category="Tables",
            labels={"table": "barrier summary"},
        ),
    log:
        res("logs/tabulate_barriers.log"),
    conda:
        ENV
    params:
        losses=LOSS_FILES,
        function_preserving={v: cfg.variant_options(config, v).function_preserving for v in config["variants"]},
    script:
        "../scripts/tabulate_barriers.py"


# How well a bag-of-words model does on each GLUE task: the bar the fine-tuned seeds are held to
# (permerge.training.baseline: learnt = at least halfway from chance to it).
rule bow_baseline:
    input:
        train=[f"{R}/data/glue/{t}/train.jsonl" for t in GLUE],
        evaluation=[f"{R}/data/glue/{t}/{eval_split(t)}.jsonl" for t in GLUE],
    output:
        res("tables/baseline.tsv"),
    log:
        res("logs/bow_baseline.log"),
    conda:
        ENV
    params:
        tasks=GLUE,
    script:
        "../scripts/bow_baseline.py"


rule tabulate_finetuning:
    input:
        models=expand(res("models/{task}/seed{seed}"), task=GLUE, seed=SEEDS),
        baseline=res("tables/baseline.tsv"),
    output:
        models=report(
            res("tables/finetune.tsv"),
            caption="../report/finetune.rst",
            category="Tables",
            labels={"table": "fine-tuning"},
        ),
        summary=report(
            res("tables/finetune_summary.tsv"),
            caption="../report/finetune_summary.rst",
            category="Tables",
            labels={"table": "fine-tuning vs bag-of-words"},
        ),
    log:
        res("logs/tabulate_finetuning.log"),
    conda:
        ENV
    script:
        "../scripts/tabulate_finetuning.py"


# Barrier vs pre-training step (trajectory:): the trajectory's tasks at each step and at the end.
rule tabulate_trajectory:
    input:
        losses=folders(TRAJECTORY_LOSS_FILES),
    output:
        report(
            res("tables/trajectory.tsv"),
            caption="../report/trajectory.rst",
            category="Tables",
            labels={"table": "barrier vs pre-training step"},
        ),
    log:
        res("logs/tabulate_trajectory.log"),
    conda:
        ENV
    params:
        losses=TRAJECTORY_LOSS_FILES,
        final_step=cfg.final_step(config),
    script:
        "../scripts/tabulate_trajectory.py"


rule plot_barriers:
    input:
        losses=folders(LOSS_FILES),
        summary=res("tables/summary.tsv"),
        finetune=[res("tables/finetune.tsv")] if GLUE else [],
        many=[res("tables/many.tsv")] if any(cfg.many_variants(config, t) for t in TASKS) else [],
        trajectory=[res("tables/trajectory.tsv")] if STEP_TASKS else [],
    output:
        pdf=report(
            res("figures/all.pdf"),
            caption="../report/figures.rst",
            category="Figures",
            labels={"figure": "all tasks (PDF)"},
        ),
        pngs=[
            report(
                f"{R}/figures/{task}.png",
                caption="../report/figure_task.rst",
                category="Figures",
                labels={"figure": f"loss along λ: {task}"},
            )
            for task in TASKS
        ]
        + (
            [
                report(
                    res("figures/trajectory.png"),
                    caption="../report/figure_trajectory.rst",
                    category="Figures",
                    labels={"figure": "barrier vs pre-training step"},
                )
            ]
            if STEP_TASKS
            else []
        ),
    log:
        res("logs/plot_barriers.log"),
    conda:
        ENV
    params:
        losses=LOSS_FILES,
        tasks=TASKS,
    script:
        "../scripts/plot_barriers.py"


# The merged checkpoints θ(λ) for merged_lambdas are their own target (`snakemake merged`): nothing
# downstream reads them, and at paper scale they are ~130 GB.
rule merged:
    input:
        [m for task in TASKS for m in merged_models(task)],
