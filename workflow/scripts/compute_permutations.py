"""Permutations aligning model B to model A, for one variant and every pair, from saved statistics.

Memory does not grow with the pairs: a Statistics read from a file keeps only means and M2; each pair's
cross blocks are read when matched and dropped afterwards (the log shows the bytes held after each pair).
"""

import time

from transformers import AutoConfig

from permerge.apply import save_permutations
from permerge.io import atomic_path, setup_job
from permerge.matching import compute_permutations, required_features
from permerge.stats import Statistics
from permerge.variants import Variant

log = setup_job(snakemake)
w, p = snakemake.wildcards, snakemake.params
variant = Variant.from_mapping(p.options, name=w.variant)
config = AutoConfig.from_pretrained(snakemake.input.model_config)
if getattr(snakemake.input, "stats", None):  # a variant that aligns nothing (vanilla) reads no statistics
    stats_path = f"{snakemake.input.stats}/{p.stats_name}"
    stats = Statistics.load(stats_path)
    missing = [f for f in required_features(variant, config.num_hidden_layers) if f not in stats.features]
    if missing:
        raise ValueError(f"{stats_path} lacks the features variant {w.variant!r} needs: {missing}")
elif variant.components:
    raise ValueError(f"variant {w.variant!r} aligns {sorted(variant.components)} but the job got no statistics")
else:
    stats = None
metadata = {"variant": w.variant, "options": repr(variant.to_dict()),
            "function_preserving": str(variant.function_preserving)}
for (a, b), out in zip(p.pairs, snakemake.output):
    start = time.perf_counter()
    perms = compute_permutations(stats, f"seed{a}", f"seed{b}", variant, config)
    log.info("%s %s seed%s-seed%s: %d permutations (%s); function-preserving: %s; %.1fs, statistics held "
             "in memory %.1f MB", w.task, w.variant, a, b, len(perms),
             ", ".join(sorted(perms)[:4]) + (" …" if len(perms) > 4 else "") or "identity",
             variant.function_preserving, time.perf_counter() - start, stats.nbytes() / 1e6 if stats else 0.0)
    with atomic_path(out) as tmp:
        save_permutations(perms, tmp, metadata={**metadata, "pair": f"seed{a}-seed{b}"})
