"""Permutations aligning model B to model A for one variant, from saved statistics."""

from transformers import AutoConfig

from permerge.apply import save_permutations
from permerge.io import atomic_path, setup_job
from permerge.matching import compute_permutations
from permerge.stats import Statistics
from permerge.variants import Variant

log = setup_job(snakemake)
w = snakemake.wildcards
variant = Variant.from_mapping(snakemake.params.options, name=w.variant)
config = AutoConfig.from_pretrained(snakemake.input.model_a)
stats = Statistics.load(snakemake.input.stats)
perms = compute_permutations(stats, f"seed{w.a}", f"seed{w.b}", variant, config)
log.info("%s %s seed%s-seed%s: %s (function-preserving: %s)", w.task, w.variant, w.a, w.b,
         ", ".join(sorted(perms)) or "identity", variant.function_preserving)
with atomic_path(snakemake.output[0]) as tmp:
    save_permutations(perms, tmp, metadata={"variant": w.variant, "options": repr(variant.to_dict()),
                                            "function_preserving": str(variant.function_preserving)})
