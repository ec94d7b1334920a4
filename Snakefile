# permerge: align BERTs trained from different seeds with activation-correlation permutations,
# interpolate θ(λ) = (1-λ)·θ_A + λ·π(θ_B), and measure loss barriers (Verma & Elbayad, TMLR 2024).
#
# Output layout (each a file or a HuggingFace model directory under the results root `results:`, which is
# results/ for the embedded default and results/paper/ for configs/paper.yaml, so both coexist):
#   config.effective.yaml                               the merged, validated configuration of the last run
#   data/            embedded texts and GLUE-shaped tasks (or local copies of hub data)
#   models/{task}/seed{seed}/                           pre-trained (mlm) or fine-tuned checkpoints
#   models/mlm_step{k}/seed{seed}/                      a checkpoint at pre-training step k (trajectory:)
#   stats/{task}/{cohort}/fraction{f}.safetensors       activation statistics of a cohort of seed pairs, one pass
#                                                       each: seeds1-2-3-4-5 (a fresh grid: every pair), seeds6x1-2-3-4-5
#                                                       (seed 6 added later: its pairs only); see permerge/cohorts.py
#   permutations/{task}/{variant}/{cohort}/seed{a}-seed{b}.safetensors   one job per (task, variant, cohort)
#   losses/{task}/{variant}/{cohort}/seed{a}-seed{b}.tsv    one row per λ, one job per (task, variant, cohort)
#                                                       (task mlm_compat: mlm's models and permutations on the
#                                                       character-spaced text the paper scored)
#   tables/barriers.tsv, tables/summary.tsv, tables/trajectory.tsv, figures/all.pdf
#   merged/{task}/{variant}/seed{a}-seed{b}/lambda{λ}/  merged checkpoints: their own target, `snakemake merged`

from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/align.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/many.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        res("figures/all.pdf"),
