"""All seeds merged at once for one (task, variant): each seed, their plain average, and the variant's
merges into one basis — to the reference seed, and (weight or hybrid matching) MergeMany's iterative
re-alignment — scored on the task's evaluation data; the merged models are saved as HF directories.

output[0]/losses.tsv: one row per model (`merge`: seed{s} | average | to_reference | iterative).
"""

from pathlib import Path

from permerge.alignment.matchers import method
from permerge.alignment.spec import spec_for_model
from permerge.alignment.variants import Variant
from permerge.checkpoints import load_permutations, save_pretrained_atomic
from permerge.evaluation.barriers import write_tsv
from permerge.evaluation.evaluate import task_evaluator
from permerge.io import atomic_path, setup_job
from permerge.merging.interpolate import model_tensors
from permerge.merging.many import average, into_model, iterative, to_reference, weight_matcher
from permerge.models import load_model
from permerge.tasks import base_task
from permerge.tooling.device import job_preflight
from permerge.tooling.footprint import evaluation_batch
from permerge.training.finetune import without_shared_pooler

log = setup_job(snakemake)
job_preflight(snakemake.params.device, log)  # CUDA works here (a SLURM node too), before any input is read
p, w = snakemake.params, snakemake.wildcards
variant = Variant.from_mapping(p.options, name=w.variant)
reads = method(variant.method)  # what its matching reads: statistics (the pair files), weights
seeds = list(p.seeds)
model_dirs = dict(zip(seeds, snakemake.input.models))
if reads.weights:  # activation merges reuse compute_permutations' pair files, which decided
    variant, note = without_shared_pooler(variant, model_dirs.values())
    if note:
        log.info("%s %s: pooler %s", w.task, w.variant, note)
ref = seeds.index(p.reference)
# with device cuda, evaluation.batch_size lowered where the job would exceed gpu_memory_gb (footprint)
batch_size = evaluation_batch(
    {**(getattr(snakemake, "config", None) or {}), "evaluation": dict(p.evaluation)}, w.task, "merge_many"
)
if batch_size != p.evaluation["batch_size"]:
    log.info("evaluation batch %d instead of %d: gpu_memory_gb", batch_size, p.evaluation["batch_size"])
evaluate, num_labels = task_evaluator(
    base_task(w.task),  # mlm_step250 is evaluated as mlm
    snakemake.input.data,
    model_dirs[seeds[0]],
    batch_size=batch_size,
    max_examples=p.evaluation["max_examples"],
    max_length=p.max_length,
    log=log,
)
models = [load_model(model_dirs[s], num_labels=num_labels) for s in seeds]
spec = spec_for_model(models[0])
params = [model_tensors(m) for m in models]


def score(name, model, **extra):
    row = {"task": w.task, "variant": w.variant, "merge": name, **evaluate(model.to(p.device)), **extra}
    model.to("cpu")
    log.info("%s %s %s: loss %.4f", w.task, w.variant, name, row["loss"])
    return row


match = weight_matcher(variant, spec, seed=0)  # weight, hybrid: matching.align_pair on the weights


rows = [score(f"seed{s}", m) for s, m in zip(seeds, models)]
merged = {"average": into_model(models[ref], average(params))}
rows.append(score("average", merged["average"], n_models=len(seeds)))
if variant.components:
    if not reads.statistics:  # weight matching, here
        res = to_reference(spec, params, match, reference=ref)
    else:  # activation/hybrid: the pair files (reference, b) the workflow computed
        files = iter(snakemake.params.permutation_files)  # inside their cohort folders
        perms = [{} if i == ref else load_permutations(next(files)) for i in range(len(seeds))]
        if reads.weights:  # hybrid: weight matching from them
            perms = [{} if i == ref else match(params[ref], params[i], init=perms[i]) for i in range(len(seeds))]
        res = to_reference(spec, params, perms=perms, reference=ref)
    merged["to_reference"] = into_model(models[ref], res.params)
    rows.append(score("to_reference", merged["to_reference"], n_models=len(seeds)))
    if reads.weights:  # MergeMany needs a matcher that aligns to an average
        it = iterative(spec, params, match, seed=0, max_rounds=p.max_rounds, init=res.perms)
        merged["iterative"] = into_model(models[ref], it.params)
        rows.append(
            score("iterative", merged["iterative"], n_models=len(seeds), rounds=it.rounds, converged=it.converged)
        )
        if not it.converged:
            log.warning("MergeMany did not converge in %d rounds", it.rounds)

with atomic_path(snakemake.output[0], is_dir=True) as tmp:
    Path(tmp).mkdir(parents=True, exist_ok=True)
    for name, model in merged.items():
        save_pretrained_atomic(model, Path(tmp) / name, tokenizer_dir=model_dirs[seeds[ref]])
    columns = ["task", "variant", "merge", "loss"]
    columns += [k for r in rows for k in r if k not in columns]
    write_tsv(rows, Path(tmp) / "losses.tsv", list(dict.fromkeys(columns)))
