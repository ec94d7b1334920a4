"""results/figures/all.pdf and a PNG per task from the loss files and the summary table (and the barrier vs
pre-training step page, trajectory.png, from the trajectory table when trajectory.steps are configured)."""

from pathlib import Path

from permerge.evaluation.barriers import read_tsv
from permerge.io import atomic_path, setup_job
from permerge.reporting.plots import write_figures

log = setup_job(snakemake)
pdf = Path(snakemake.output.pdf)
with atomic_path(pdf) as tmp_pdf:
    # PNGs are written next to the PDF's temp file's dir, then moved one by one.
    many = read_tsv(snakemake.input.many[0]) if snakemake.input.many else None
    trajectory = read_tsv(snakemake.input.trajectory[0]) if snakemake.input.trajectory else None
    pngs = write_figures(
        snakemake.params.losses,
        read_tsv(snakemake.input.summary),
        tmp_pdf,
        tmp_pdf.parent,
        snakemake.params.tasks,
        many_rows=many,
        trajectory_rows=trajectory,
    )
    for png in pngs:
        png.replace(pdf.parent / png.name)
log.info("wrote %s and %d PNGs", pdf, len(pngs))
