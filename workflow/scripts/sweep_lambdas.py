"""Loss (and task metric) of θ(λ) for every λ and each pair (A, B) of `params.pairs` (the workflow gives a job
the pairs of one cohort) of one variant: the output folder holds seed{a}-seed{b}.tsv per pair, one row per λ,
plus the unpermuted B's values as `*_b_unpermuted` columns repeated on every row. The permutations are read
from the cohort's folder of pair files. The folder replaces any old one only when every file is written; the
pairs an interrupted try of the same job finished are kept (permerge.io.resumable_folder).

θ(λ) is interpolated in memory into one working model; evaluation data is prepared once for the job.
"""

from pathlib import Path

from permerge.checkpoints import load_permutations
from permerge.cohorts import pair_file
from permerge.evaluation.evaluate import lambda_sweep, task_evaluator, write_loss_table
from permerge.io import atomic_path, job_fingerprint, resumable_folder, setup_job
from permerge.merging.permute import apply_permutations
from permerge.models import load_model
from permerge.tasks import base_task
from permerge.tooling.device import job_preflight
from permerge.tooling.footprint import evaluation_batch

log = setup_job(snakemake)
job_preflight(snakemake.params.device, log)  # CUDA works here (a SLURM node too), before any input is read
p, w = snakemake.params, snakemake.wildcards
model_dirs = dict(zip(p.seeds, snakemake.input.models))
# with device cuda, evaluation.batch_size lowered where the job would exceed gpu_memory_gb (footprint)
batch_size = evaluation_batch(
    {**(getattr(snakemake, "config", None) or {}), "evaluation": dict(p.evaluation)}, w.task, "sweep_lambdas"
)
if batch_size != p.evaluation["batch_size"]:
    log.info("evaluation batch %d instead of %d: gpu_memory_gb", batch_size, p.evaluation["batch_size"])
evaluate, num_labels = task_evaluator(
    base_task(w.task),  # mlm_step250 is evaluated as mlm
    snakemake.input.data,
    model_dirs[p.seeds[0]],
    batch_size=batch_size,
    max_examples=p.evaluation["max_examples"],
    max_length=p.max_length,
    log=log,
)
models = {s: load_model(d, device=p.device, num_labels=num_labels) for s, d in model_dirs.items()}
scores = {}  # each seed evaluated once: A is every pair's λ=0 row, B its unpermuted endpoint


def score(seed):
    if seed not in scores:
        scores[seed] = evaluate(models[seed])
    return scores[seed]


def sweep(a, b, perm_file, out):
    aligned_b = apply_permutations(models[b], load_permutations(perm_file))
    # model_b: the unpermuted B is scored too (loss_b_unpermuted, ...): π(B) is not B when the variant is
    # not function-preserving, and for one that is, the λ=1 row must match it.
    rows = lambda_sweep(
        models[a], aligned_b, p.lambdas, evaluate, model_b=models[b], scores={"a": score(a), "b": score(b)}
    )
    loss_b, loss_pi_b = rows[0]["loss_b_unpermuted"], next(r["loss"] for r in rows if r["lambda"] == 1.0)
    log.info(
        "%s %s seed%s-seed%s: "
        + " ".join(f"{r['lambda']:g}:{r['loss']:.4f}" for r in rows)
        + " | unpermuted B %.4f (λ=1 rel diff %.2g)",
        w.task,
        w.variant,
        a,
        b,
        loss_b,
        abs(loss_pi_b - loss_b) / loss_b if loss_b else 0.0,
    )
    write_loss_table(rows, out)


# The cohort's folder appears whole when every pair is done; a pair finished by an interrupted try of this
# same job (a preempted SLURM job) is kept, not swept again.
with resumable_folder(snakemake.output[0], job_fingerprint(snakemake), log) as folder:
    for a, b in p.pairs:
        out = Path(pair_file(folder, "losses", a, b))
        if out.is_file():
            continue
        with atomic_path(out) as tmp:
            sweep(a, b, pair_file(snakemake.input.permutations, "permutations", a, b), tmp)
