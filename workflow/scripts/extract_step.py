"""One seed's checkpoint at an intermediate pre-training step as a HuggingFace model directory (mlm_step{k})."""

from permerge.io import atomic_path, setup_job

log = setup_job(snakemake)
from permerge.training.steps import export_step  # noqa: E402

step = int(snakemake.params.step)
with atomic_path(snakemake.output[0], is_dir=True) as tmp:
    export_step(snakemake.input.seed_dir, step, tmp)
log.info("saved step %d of %s as %s", step, snakemake.input.seed_dir, snakemake.output[0])
