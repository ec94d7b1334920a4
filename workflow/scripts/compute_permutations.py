"""Permutations aligning model B to model A, for one variant and every pair, from saved statistics."""

from transformers import AutoConfig

from permerge.apply import save_permutations
from permerge.io import atomic_path, setup_job
from permerge.matching import compute_permutations
from permerge.stats import Statistics
from permerge.variants import Variant

log = setup_job(snakemake)
w, p = snakemake.wildcards, snakemake.params
variant = Variant.from_mapping(p.options, name=w.variant)
config = AutoConfig.from_pretrained(snakemake.input.model_config)
stats = Statistics.load(snakemake.input.stats)
metadata = {"variant": w.variant, "options": repr(variant.to_dict()),
            "function_preserving": str(variant.function_preserving)}
for (a, b), out in zip(p.pairs, snakemake.output):
    perms = compute_permutations(stats, f"seed{a}", f"seed{b}", variant, config)
    log.info("%s %s seed%s-seed%s: %d permutations (%s); function-preserving: %s", w.task, w.variant,
             a, b, len(perms), ", ".join(sorted(perms)[:4]) + (" …" if len(perms) > 4 else "") or "identity",
             variant.function_preserving)
    with atomic_path(out) as tmp:
        save_permutations(perms, tmp, metadata={**metadata, "pair": f"seed{a}-seed{b}"})
