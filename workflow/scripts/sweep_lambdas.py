"""Loss (and task metric) of θ(λ) for every λ and pair of one variant; one TSV row per λ, plus the
unpermuted B's values as `*_b_unpermuted` columns repeated on every row.

θ(λ) is interpolated in memory into one working model; evaluation data is prepared once for all pairs.
"""

from permerge.apply import apply_permutations, load_permutations
from permerge.evaluate import (build_glue_evalset, glue_loss, lambda_sweep, load_evalset, mlm_loss,
                               write_loss_table)
from permerge.io import setup_job
from permerge.models import load_model, load_tokenizer

log = setup_job(snakemake)
p, w = snakemake.params, snakemake.wildcards
batch_size = p.evaluation["batch_size"]
model_dirs = dict(zip(p.seeds, snakemake.input.models))

if w.task == "mlm":
    evalset = load_evalset(snakemake.input.data)
    num_labels = None

    def evaluate(model):
        return mlm_loss(model, evalset, batch_size=batch_size)

else:
    from permerge.standins import read_jsonl
    from permerge.tasks import TASKS

    info = TASKS[w.task]
    num_labels = info.num_labels
    examples = read_jsonl(snakemake.input.data, p.evaluation["max_examples"] or None)
    evalset = build_glue_evalset(load_tokenizer(model_dirs[p.seeds[0]]), examples, info.text_keys,
                                 max_length=p.max_length)
    log.info("%s: %d validation examples from %s", w.task, len(examples), snakemake.input.data)

    def evaluate(model):
        return glue_loss(model, evalset, num_labels=info.num_labels, metric=info.metric,
                         batch_size=batch_size)

models = {s: load_model(d, device=p.device, num_labels=num_labels) for s, d in model_dirs.items()}
for (a, b), perm_file, out in zip(p.pairs, snakemake.input.permutations, snakemake.output):
    aligned_b = apply_permutations(models[b], load_permutations(perm_file))
    # model_b: the unpermuted B is scored too (loss_b_unpermuted, ...): π(B) is not B when the variant is
    # not function-preserving, and for one that is, the λ=1 row must match it.
    rows = lambda_sweep(models[a], aligned_b, p.lambdas, evaluate, model_b=models[b])
    loss_b, loss_pi_b = rows[0]["loss_b_unpermuted"], next(r["loss"] for r in rows if r["lambda"] == 1.0)
    log.info("%s %s seed%s-seed%s: " + " ".join(f"{r['lambda']:g}:{r['loss']:.4f}" for r in rows)
             + " | unpermuted B %.4f (λ=1 rel diff %.2g)", w.task, w.variant, a, b, loss_b,
             abs(loss_pi_b - loss_b) / loss_b if loss_b else 0.0)
    write_loss_table(rows, out)
