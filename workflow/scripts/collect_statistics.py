"""Activation statistics of all seed models: every data fraction a task's variants use, from ONE pass.

params.fractions: [[fraction, [variant option mappings that use it]], ...], fractions ascending;
output[0]: the task's statistics folder, holding fraction{f}.safetensors for each fraction (written into a
temporary folder that replaces it only when every file is complete). The examples (capped by statistics.max_lines) are read
in order; fraction f uses the first floor(f * n) of them (at least one). Batches never straddle a
fraction's end, and the statistics after its last batch are saved as its file, holding only the features
its variants need (stats.collect_statistics(snapshots=...)). Variants without components need no
features: when no variant of the task needs any, every file is written empty (names, pairs, no features)
without loading the models.
"""

from pathlib import Path

from transformers import AutoConfig

from permerge.alignment.matching import union_features
from permerge.alignment.stats import Statistics, collect_statistics, feature_names, fraction_count, segmented_batches
from permerge.alignment.variants import Variant
from permerge.io import atomic_path, setup_job
from permerge.models import load_model, load_tokenizer
from permerge.tooling.device import job_preflight
from permerge.tooling.footprint import feature_dim, hf_shape, statistics_plan

log = setup_job(snakemake)
job_preflight(snakemake.params.device, log)  # CUDA works here (a SLURM node too), before any input is read
p = snakemake.params
outputs = []  # the fraction files, inside the temporary folder (set below)
names = [f"seed{s}" for s in p.seeds]
pairs = [(f"seed{a}", f"seed{b}") for a, b in p.pairs]
text = str(snakemake.input.text)


def variant(opts, i):
    # the fraction is given by the entry itself; the mapping's stats_fraction (maybe null) is not needed here
    return Variant.from_mapping(
        {k: v for k, v in dict(opts).items() if k != "stats_fraction"}, name=f"fraction entry {i}"
    )


fractions = [float(f) for f, _ in p.fractions]
variants = [[variant(o, i) for o in opts] for i, (_, opts) in enumerate(p.fractions)]
if fractions != sorted(fractions) or len(set(fractions)) != len(fractions):
    raise ValueError(f"params.fractions must be distinct and ascending, got {fractions}")
for f in fractions:
    fraction_count(1, f)  # 0 < f <= 1, with a clear error


def summary(features):
    kinds = {}
    for f in features:
        kinds[f.partition(".")[0]] = kinds.get(f.partition(".")[0], 0) + 1
    return ", ".join(f"{k} x{n}" for k, n in kinds.items()) or "none"


def write_empty(reason):
    for f, out in zip(fractions, outputs):
        with atomic_path(out) as tmp:
            Statistics(names, pairs, {}).save(
                tmp, metadata={"text": text, "fraction": str(f), "examples": "0", "tokens": "0", "note": reason}
            )
        log.info("fraction %g: no features needed (%s): wrote %s without running the models", f, reason, out)


with atomic_path(snakemake.output[0], is_dir=True) as folder:  # replaces the folder once complete
    Path(folder).mkdir(parents=True, exist_ok=True)
    outputs[:] = [str(Path(folder) / f"fraction{f:g}.safetensors") for f in fractions]
    num_layers = AutoConfig.from_pretrained(snakemake.input.models[0]).num_hidden_layers
    all_variants = [v for vs in variants for v in vs]
    if not union_features(all_variants, num_layers, pooler=True):
        write_empty("vanilla averaging")
    else:
        models = [load_model(m, device=p.device) for m in snakemake.input.models]
        pooler = "pooler" in feature_names(models[0])
        emb = "emb" in feature_names(models[0])  # a projected ELECTRA's embedding space
        per_fraction = [union_features(vs, num_layers, pooler=pooler, emb=emb) for vs in variants]
        features = union_features(all_variants, num_layers, pooler=pooler, emb=emb)
        if not features:
            write_empty("only pooler matching, and the models have no pooler")
        else:
            tokenizer = load_tokenizer(snakemake.input.models[0])
            if text.endswith(".jsonl"):  # a GLUE task's training split: sentence (pairs)
                from permerge.data.jsonl import read_jsonl
                from permerge.tasks import TASKS, base_task

                keys = TASKS[base_task(snakemake.wildcards.task)].text_keys
                examples = read_jsonl(text)
            else:  # one sentence per line
                keys = ("text",)
                from permerge.io import read_text_lines  # a non-UTF-8 byte fails naming the line

                examples = [{"text": line} for line in read_text_lines(text)]
            max_lines = p.statistics["max_lines"]
            if max_lines:
                examples = examples[:max_lines]
            if not examples:
                raise ValueError(f"{text}: no examples for the statistics")
            # with device cuda: the micro-batch and the cross blocks' place that keep the pass under
            # gpu_memory_gb (footprint.plan_statistics; a clear error naming the key if nothing fits)
            conf = dict(getattr(snakemake, "config", None) or {})  # the whole configuration (gpu_memory_gb)
            shape = hf_shape(models[0].config)
            plan = statistics_plan(
                {
                    **conf,
                    "device": p.device,
                    "statistics": {**conf.get("statistics", {}), **p.statistics},
                },
                snakemake.wildcards.task,
                shape=shape,
                dims=[feature_dim(shape, f) for f in features],
                models=sum(t.numel() * t.element_size() for m in models for t in m.parameters()),
            )
            if plan is not None:
                log.info(
                    "GPU plan for gpu_memory_gb: %d of %d sequences per update, cross blocks on the %s, peak %.2f GB (%s)",
                    plan.micro_batch,
                    p.statistics["batch_size"],
                    "GPU" if plan.cross_on_device else "host",
                    plan.peak / 1e9,
                    ", ".join(f"{k} {v / 1e9:.2f} GB" for k, v in plan.parts.items()),
                )
            ends = [fraction_count(len(examples), f) for f in fractions]
            batches, after = segmented_batches(
                tokenizer,
                examples,
                ends,
                batch_size=p.statistics["batch_size"],
                max_length=p.statistics["max_length"],
                text_keys=keys,
            )
            log.info(
                "statistics of %s on %s (%d examples): one pass over %d examples for fractions %s; features: %s",
                names,
                text,
                len(examples),
                ends[-1],
                fractions,
                summary(features),
            )

            seen = {"tokens": 0}
            by_count: dict[int, list[int]] = {}  # fractions that end after the same batch share one snapshot
            for i, k in enumerate(after):
                by_count.setdefault(k, []).append(i)

            def progress(step, tokens):
                seen["tokens"] += tokens
                if step % 50 == 0:
                    log.info("batch %d: %d tokens", step, tokens)

            def saver(indices):
                def save(stats):
                    for i in indices:
                        meta = {
                            "text": text,
                            "fraction": str(fractions[i]),
                            "examples": str(ends[i]),
                            "tokens": str(seen["tokens"]),
                        }
                        with atomic_path(outputs[i]) as tmp:
                            stats.save(tmp, metadata=meta, features=per_fraction[i])
                        log.info(
                            "fraction %g: %d examples, %d tokens, %d features (%s) -> %s",
                            fractions[i],
                            ends[i],
                            seen["tokens"],
                            len(per_fraction[i]),
                            summary(per_fraction[i]),
                            outputs[i],
                        )

                return save

            collect_statistics(
                models,
                batches,
                names=names,
                pairs=pairs,
                features=features,
                device=p.device,
                progress=progress,
                snapshots={k: saver(ix) for k, ix in by_count.items()},
                micro_batch=None if plan is None else plan.micro_batch,
                cross_device=None if plan is None else plan.cross_device,
            )
            log.info("done: %d tokens", seen["tokens"])
