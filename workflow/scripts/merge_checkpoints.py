"""Merged checkpoints θ(λ) = (1-λ)·θ_A + λ·π(θ_B) as HuggingFace directories, the pairs of `params.pairs` (one
a job in the workflow) of one variant."""

from permerge.checkpoints import load_permutations, save_pretrained_atomic
from permerge.io import setup_job
from permerge.merging.interpolate import interpolate
from permerge.merging.permute import apply_permutations
from permerge.models import load_model

log = setup_job(snakemake)
p = snakemake.params
model_dirs = dict(zip(p.seeds, snakemake.input.models))
models = {s: load_model(d) for s, d in model_dirs.items()}
outputs = iter(snakemake.output)  # ordered pair by pair, λ by λ (see the rule)
for (a, b), perm_file in zip(p.pairs, p.permutation_files):  # inside the pair's cohort folder
    aligned_b = apply_permutations(models[b], load_permutations(perm_file))
    for lam in p.lambdas:
        out = next(outputs)
        save_pretrained_atomic(interpolate(models[a], aligned_b, lam), out, tokenizer_dir=model_dirs[a])
        log.info("seed%s-seed%s: wrote θ(%g) to %s", a, b, lam, out)
