# Barrier tables and figures: the user-facing end of the pipeline.


localrules:
    tabulate_barriers,
    plot_barriers,
    tabulate_finetuning,


rule tabulate_barriers:
    input:
        losses=[f for task in TASKS for f in loss_files(task)],
    output:
        barriers=report(
            "results/tables/barriers.tsv",
            caption="../report/barriers.rst",
            category="Tables",
            labels={"table": "barriers per pair"},
        ),
        summary=report(
            "results/tables/summary.tsv",
            caption="../report/summary.rst",
            category="Tables",
            labels={"table": "barrier summary"},
        ),
    log:
        "results/logs/tabulate_barriers.log",
    params:
        function_preserving={
            v: cfg.variant_options(config, v).function_preserving for v in config["variants"]
        },
    conda:
        ENV
    script:
        "../scripts/tabulate_barriers.py"


rule tabulate_finetuning:
    input:
        models=expand("results/models/{task}/seed{seed}", task=GLUE, seed=SEEDS),
    output:
        report(
            "results/tables/finetune.tsv",
            caption="../report/finetune.rst",
            category="Tables",
            labels={"table": "fine-tuning"},
        ),
    log:
        "results/logs/tabulate_finetuning.log",
    conda:
        ENV
    script:
        "../scripts/tabulate_finetuning.py"


rule plot_barriers:
    input:
        losses=[f for task in TASKS for f in loss_files(task)],
        summary="results/tables/summary.tsv",
        # Not read: listed so that this target builds the whole grid.
        merged=[m for task in TASKS for m in merged_models(task)],
        finetune=["results/tables/finetune.tsv"] if GLUE else [],
    output:
        pdf=report(
            "results/figures/all.pdf",
            caption="../report/figures.rst",
            category="Figures",
            labels={"figure": "all tasks (PDF)"},
        ),
        pngs=[
            report(
                f"results/figures/{task}.png",
                caption="../report/figure_task.rst",
                category="Figures",
                labels={"figure": f"loss along λ: {task}"},
            )
            for task in TASKS
        ],
    log:
        "results/logs/plot_barriers.log",
    params:
        tasks=TASKS,
    conda:
        ENV
    script:
        "../scripts/plot_barriers.py"
