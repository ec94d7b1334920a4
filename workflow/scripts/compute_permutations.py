"""Permutations aligning model B to model A, for one variant and every pair.

method activation (the paper): from saved statistics. Memory does not grow with the pairs: a Statistics read
from a file keeps only means and M2; each pair's cross blocks are read when matched and dropped afterwards
(the log shows the bytes held after each pair).
method weight (data-free): from the seed checkpoints alone (`input.models`, in the order of `params.seeds`);
no statistics. method hybrid: weight matching started from the activation permutations (both inputs).
Only the current pair's two models are held in memory.
"""

import time
import zlib

from permerge.checkpoints import save_permutations
from permerge.io import atomic_path, setup_job
from permerge.variants import Variant

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


def align(variant):
    """The permutations of every pair (imports here: vanilla's jobs need none of them, seconds each)."""
    from transformers import AutoConfig

    from permerge.checkpoints import check_compatible
    from permerge.finetune import without_shared_pooler
    from permerge.matching import compute_permutations, required_features
    from permerge.models import load_model
    from permerge.spec import check_spec, spec_for_model
    from permerge.stats import Statistics
    from permerge.weight_matching import match_weights

    # Poolers drawn from finetune.head_seed start identical: aligned by index, like the classifier.
    variant, note = without_shared_pooler(variant, getattr(snakemake.input, "heads", None) or [])
    pooler_note = {"pooler": note} if note else {}
    if note:
        log.info("%s %s: pooler %s", w.task, w.variant, note)
    config = AutoConfig.from_pretrained(snakemake.input.model_config)
    use_stats = variant.method != "weight"
    use_weights = variant.method != "activation"
    if use_stats and getattr(snakemake.input, "stats", None):
        stats_path = f"{snakemake.input.stats}/{p.stats_name}"
        stats = Statistics.load(stats_path)
        missing = [f for f in required_features(variant, config.num_hidden_layers) if f not in stats.features]
        if missing:
            raise ValueError(f"{stats_path} lacks the features variant {w.variant!r} needs: {missing}")
    elif use_stats:
        raise ValueError(
            f"variant {w.variant!r} aligns {sorted(variant.components)} from activations "
            f"(method {variant.method}) but the job got no statistics"
        )
    else:  # data-free weight matching: no statistics read
        stats = None
    model_dirs = {}
    if use_weights:
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
    base_seed = int(getattr(p, "seed", 0) or 0)
    max_iter = int(getattr(p, "max_iter", 100) or 100)
    metadata = metadata_of(variant, **pooler_note)
    loaded = {}  # seed -> model; only the current pair's models are kept
    for (a, b), out in zip(p.pairs, snakemake.output):
        start = time.perf_counter()
        pair = f"seed{a}-seed{b}"
        extra = {}
        perms = compute_permutations(stats, f"seed{a}", f"seed{b}", variant, config) if use_stats else {}
        if use_weights:
            loaded = {s: loaded[s] if s in loaded else load_model(model_dirs[s]) for s in (a, b)}
            model_a, model_b = loaded[a], loaded[b]
            check_compatible(model_a.config, model_b.config)
            spec = spec_for_model(model_a)
            check_spec(spec, model_b)
            # A stable hash of the pair (never Python's salted hash()): reruns give the same permutations.
            rng_seed = [base_seed, zlib.crc32(pair.encode())]
            result = match_weights(
                spec,
                model_a,
                model_b,
                variant,
                seed=rng_seed,
                max_iter=max_iter,
                init=perms if variant.method == "hybrid" else None,
            )
            perms = result.perms
            extra = {
                "iterations": str(result.sweeps),
                "converged": str(result.converged),
                "objective": repr(result.objective[-1]),
                "objective_start": repr(result.objective[0]),
                "seed": repr(rng_seed),
            }
            log.info(
                "%s %s %s: weight matching (%s) %d sweeps%s, objective %.6g -> %.6g",
                w.task,
                w.variant,
                pair,
                variant.method,
                result.sweeps,
                "" if result.converged else f" (max_iter {max_iter}, not converged)",
                result.objective[0],
                result.objective[-1],
            )
        log.info(
            "%s %s %s: %d permutations (%s); method %s; function-preserving: %s; %.1fs, statistics held in memory %.1f MB",
            w.task,
            w.variant,
            pair,
            len(perms),
            ", ".join(sorted(perms)[:4]) + (" …" if len(perms) > 4 else "") or "identity",
            variant.method,
            variant.function_preserving,
            time.perf_counter() - start,
            stats.nbytes() / 1e6 if stats else 0.0,
        )
        with atomic_path(out) as tmp:
            save_permutations(perms, tmp, metadata={**metadata, "pair": pair, **extra})


if variant.components:
    align(variant)
else:  # vanilla averaging: the identity for every pair, read from nothing
    for (a, b), out in zip(p.pairs, snakemake.output):
        save_permutations({}, out, metadata=metadata_of(variant, pair=f"seed{a}-seed{b}"))
    log.info("%s %s: identity (no components) for %d pairs", w.task, w.variant, len(p.pairs))
