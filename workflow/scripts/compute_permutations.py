"""Permutations aligning model B to model A, for one variant and the pairs (A, B) of `params.pairs` (the
workflow gives a job the pairs of one cohort): ``matching.align_pair`` with what the variant's method reads
(``matchers.METHOD``). The output folder holds seed{a}-seed{b}.safetensors per pair and replaces any old one
only when every file is written; the pairs an interrupted try of the same job finished are kept
(permerge.io.resumable_folder).

Activation statistics (method activation, hybrid): memory does not grow with the pairs: a Statistics read
from a file keeps only means and M2; each pair's cross blocks are read when matched and dropped afterwards
(the log shows the bytes held after each pair). Weights (method weight, hybrid): the seed checkpoints
(`input.models`, in the order of `params.seeds`); only the current pair's two models are held in memory.
"""

import time
from pathlib import Path

from permerge.alignment.variants import Variant
from permerge.checkpoints import save_permutations
from permerge.cohorts import pair_file
from permerge.io import atomic_path, job_fingerprint, resumable_folder, setup_job

log = setup_job(snakemake)
w, p = snakemake.wildcards, snakemake.params
variant = Variant.from_mapping(p.options, name=w.variant)


def metadata_of(variant, **extra):
    return {
        "variant": w.variant,
        "options": repr(variant.to_dict()),
        "method": variant.method,
        "function_preserving": str(variant.function_preserving),
        **extra,
    }


def pair_files(folder):
    return [Path(pair_file(folder, "permutations", a, b)) for a, b in p.pairs]


def align(variant, folder):
    """The permutations of every pair (imports here: vanilla's jobs need none of them, seconds each)."""
    from transformers import AutoConfig

    from permerge.alignment.matchers import method
    from permerge.alignment.matching import Pair, align_pair, pair_seed, required_features
    from permerge.alignment.stats import Statistics
    from permerge.checkpoints import check_compatible
    from permerge.models import load_model
    from permerge.training.finetune import without_shared_pooler

    # Poolers drawn from finetune.head_seed start identical: aligned by index, like the classifier.
    variant, note = without_shared_pooler(variant, getattr(snakemake.input, "heads", None) or [])
    pooler_note = {"pooler": note} if note else {}
    if note:
        log.info("%s %s: pooler %s", w.task, w.variant, note)
    config = AutoConfig.from_pretrained(snakemake.input.model_config)
    reads = method(variant.method)
    stats = None
    if reads.statistics:
        if not getattr(snakemake.input, "stats", None):
            raise ValueError(
                f"variant {w.variant!r} aligns {sorted(variant.components)} from activations "
                f"(method {variant.method}) but the job got no statistics"
            )
        stats_path = f"{snakemake.input.stats}/{p.stats_name}"
        stats = Statistics.load(stats_path)
        missing = [f for f in required_features(variant, config.num_hidden_layers) if f not in stats.features]
        if missing:
            raise ValueError(f"{stats_path} lacks the features variant {w.variant!r} needs: {missing}")
    model_dirs = {}
    if reads.weights:
        dirs = list(getattr(snakemake.input, "models", None) or [])
        seeds = list(getattr(p, "seeds", None) or [])
        if not dirs:
            raise ValueError(f"variant {w.variant!r} uses method {variant.method!r} but the job got no seed models")
        if len(dirs) != len(seeds):
            raise ValueError(f"variant {w.variant!r}: {len(dirs)} model directories for {len(seeds)} seeds {seeds}")
        model_dirs = dict(zip(seeds, dirs))
        absent = sorted({s for pair in p.pairs for s in pair} - set(model_dirs), key=str)
        if absent:
            raise ValueError(f"variant {w.variant!r}: no model directory for seed(s) {absent}")
    metadata = metadata_of(variant, **pooler_note)
    loaded = {}  # seed -> model; only the current pair's models are kept
    for (a, b), out in zip(p.pairs, pair_files(folder)):
        if out.is_file():  # done by an interrupted try of this job
            continue
        start = time.perf_counter()
        name = f"seed{a}-seed{b}"
        if reads.weights:
            loaded = {s: loaded[s] if s in loaded else load_model(model_dirs[s]) for s in (a, b)}
            check_compatible(loaded[a].config, loaded[b].config)
        pair = Pair(
            config=config,
            stats=stats,
            a=f"seed{a}",
            b=f"seed{b}",
            params_a=loaded.get(a),
            params_b=loaded.get(b),
            seed=pair_seed(f"seed{a}", f"seed{b}"),
        )
        result = align_pair(variant, pair)
        perms, info = result.perms, result.info
        log.info(
            "%s %s %s: %d permutations (%s); method %s%s; function-preserving: %s; %.1fs, statistics held in memory %.1f MB",
            w.task,
            w.variant,
            name,
            len(perms),
            ", ".join(sorted(perms)[:4]) + (" …" if len(perms) > 4 else "") or "identity",
            variant.method,
            f" ({info['iterations']} sweeps, converged {info['converged']}, objective {info['objective_start']} -> "
            f"{info['objective']})"
            if info
            else "",
            variant.function_preserving,
            time.perf_counter() - start,
            stats.nbytes() / 1e6 if stats else 0.0,
        )
        with atomic_path(out) as tmp:
            save_permutations(perms, tmp, metadata={**metadata, "pair": name, **info})


# The cohort's folder appears whole when every pair is done; the pairs an interrupted try of this same job
# finished (a preempted SLURM job) are kept, not matched again.
with resumable_folder(snakemake.output[0], job_fingerprint(snakemake), log) as folder:
    if variant.components:
        align(variant, folder)
    else:  # vanilla averaging: the identity for every pair, read from nothing
        for (a, b), out in zip(p.pairs, pair_files(folder)):
            save_permutations({}, out, metadata=metadata_of(variant, pair=f"seed{a}-seed{b}"))
        log.info("%s %s: identity (no components) for %d pairs", w.task, w.variant, len(p.pairs))
