"""`snakemake --report` after the smoke run: one self-contained HTML file with the figures and tables."""

import base64
import re
import shutil

from tests.workflow_utils import snakemake


def test_report_contains_figures_and_tables(smoke_run, tmp_path):
    wd = tmp_path / "wf"
    shutil.copytree(smoke_run, wd, symlinks=True)
    snakemake(wd, "--report", "results/report.html", "--configfile", "configs/smoke.yaml")
    html = (wd / "results" / "report.html").read_text()

    # Every figure and table of the run is embedded (file name, and the PNG bytes themselves).
    for name in (
        "all.pdf",
        "mlm.png",
        "sst2.png",
        "stsb.png",
        "trajectory.png",
        "barriers.tsv",
        "summary.tsv",
        "finetune.tsv",
        "trajectory.tsv",
    ):
        assert name in html, f"{name} missing from the report"
    png = base64.b64encode((wd / "results" / "figures" / "mlm.png").read_bytes()).decode()
    assert png[:2000] in html, "the mlm figure's data is not embedded"
    # Captions and the workflow description
    assert "loss barrier" in html.lower()
    assert "Merging Text Transformer Models" in html
    assert re.search(r"Figures", html) and re.search(r"Tables", html)
