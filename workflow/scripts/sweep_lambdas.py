"""Loss (and task metric) of θ(λ) for every λ, interpolated in memory; one TSV row per λ."""

import json

from permerge.apply import apply_permutations, load_permutations
from permerge.evaluate import (build_glue_evalset, glue_loss, lambda_sweep, load_evalset, mlm_loss,
                               write_loss_table)
from permerge.io import setup_job
from permerge.models import load_model, load_tokenizer

log = setup_job(snakemake)
p, w = snakemake.params, snakemake.wildcards
batch_size = p.evaluation["batch_size"]

if w.task == "mlm":
    evalset = load_evalset(snakemake.input.data)

    def evaluate(model):
        return mlm_loss(model, evalset, batch_size=batch_size)

    num_labels = None
else:
    from permerge.standins import TASKS

    info = TASKS[w.task]
    num_labels = info.num_labels
    with open(snakemake.input.data) as fh:
        examples = [json.loads(line) for line in fh if line.strip()]
    if p.evaluation["max_examples"]:
        examples = examples[: p.evaluation["max_examples"]]
    evalset = build_glue_evalset(load_tokenizer(snakemake.input.model_a), examples, info.text_keys,
                                 max_length=p.max_length)

    def evaluate(model):
        return glue_loss(model, evalset, num_labels=info.num_labels, metric=info.metric,
                         batch_size=batch_size)

model_a = load_model(snakemake.input.model_a, device=p.device, num_labels=num_labels)
model_b = load_model(snakemake.input.model_b, device=p.device, num_labels=num_labels)
aligned_b = apply_permutations(model_b, load_permutations(snakemake.input.permutations))
rows = lambda_sweep(model_a, aligned_b, p.lambdas, evaluate)
for r in rows:
    log.info("λ=%.3f loss=%.5f", r["lambda"], r["loss"])
write_loss_table(rows, snakemake.output[0])
