"""The merged checkpoint θ(λ) = (1-λ)·θ_A + λ·π(θ_B) as a HuggingFace directory."""

from permerge.apply import apply_permutations, interpolate, load_permutations, save_pretrained_atomic
from permerge.io import setup_job
from permerge.models import load_model

log = setup_job(snakemake)
model_a = load_model(snakemake.input.model_a)
aligned_b = apply_permutations(load_model(snakemake.input.model_b),
                               load_permutations(snakemake.input.permutations))
merged = interpolate(model_a, aligned_b, snakemake.params.lam)
save_pretrained_atomic(merged, snakemake.output[0], tokenizer_dir=snakemake.input.model_a)
log.info("wrote θ(%g) to %s", snakemake.params.lam, snakemake.output[0])
