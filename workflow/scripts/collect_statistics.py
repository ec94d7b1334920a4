"""Activation statistics of all seed models in one pass over the statistics text."""

from permerge.io import atomic_path, setup_job
from permerge.models import load_model, load_tokenizer
from permerge.stats import collect_statistics, first_fraction, text_batches

log = setup_job(snakemake)
p = snakemake.params
names = [f"seed{s}" for s in p.seeds]
models = [load_model(m, device=p.device) for m in snakemake.input.models]
tokenizer = load_tokenizer(snakemake.input.models[0])

text = str(snakemake.input.text)
if text.endswith(".jsonl"):  # a GLUE task's training split: sentence (pairs)
    from permerge.standins import TASKS, read_jsonl

    keys = TASKS[snakemake.wildcards.task].text_keys
    examples = read_jsonl(text)
else:  # one sentence per line
    keys = ("text",)
    with open(text) as fh:
        examples = [{"text": line.strip()} for line in fh if line.strip()]
if p.statistics["max_lines"]:
    examples = examples[: p.statistics["max_lines"]]
examples = first_fraction(examples, p.fraction)
log.info("statistics of %s on %d examples of %s (fraction %g)", names, len(examples), text, p.fraction)

batches = text_batches(tokenizer, examples, batch_size=p.statistics["batch_size"],
                       max_length=p.statistics["max_length"], text_keys=keys)
pairs = [(f"seed{a}", f"seed{b}") for a, b in p.pairs]


def progress(step, tokens):
    if step % 50 == 0:
        log.info("batch %d: %d tokens", step, tokens)


stats = collect_statistics(models, batches, names=names, pairs=pairs, device=p.device, progress=progress)
with atomic_path(snakemake.output[0]) as tmp:
    stats.save(tmp, metadata={"text": text, "fraction": str(p.fraction), "examples": str(len(examples))})
log.info("done: %d tokens", stats.num_tokens)
