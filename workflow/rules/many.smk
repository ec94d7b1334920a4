# All seeds merged at once (config `many`): per (task, variant), the seeds, their plain average and the
# variant's merges (to the reference seed; MergeMany for weight/hybrid matching) with their losses.


rule merge_many:
    input:
        models=seed_models,
        # activation/hybrid: the pair files (reference, b) of the λ grid
        permutations=many_permutations,
        data=evaluation_data,
    output:
        directory(res("many/{task}/{variant}")),
    log:
        res("logs/merge_many/{task}/{variant}.log"),
    benchmark:
        res("benchmarks/merge_many/{task}/{variant}.tsv")
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=lambda w: FOOTPRINT.mem_mb("merge_checkpoints", config, w.task),
        runtime=120,
        gpu=GPU,
    params:
        permutation_files=many_permutation_files,
        options=variant_options,
        seeds=SEEDS,
        reference=cfg.many_reference(config),
        max_rounds=config["many"]["max_rounds"],
        evaluation=config["evaluation"],
        max_length=config["finetune"]["max_length"],
        device=config["device"],
    script:
        "../scripts/merge_many.py"


localrules:
    tabulate_many,


rule tabulate_many:
    input:
        [res(f"many/{t}/{v}") for t in TASKS for v in cfg.many_variants(config, t)],
    output:
        report(
            res("tables/many.tsv"),
            caption="../report/many.rst",
            category="Tables",
            labels={"table": "all seeds merged"},
        ),
    log:
        res("logs/tabulate_many.log"),
    conda:
        ENV
    script:
        "../scripts/tabulate_many.py"
