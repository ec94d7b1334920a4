"""permerge: align and merge BERTs trained from different seeds (Verma & Elbayad, TMLR 2024).

Laid out by stage (docs/extending.md, "Where things are"): ``data`` (offline and hub data), ``training``
(seeds and fine-tuning), ``alignment`` (permutations from activations or weights), ``merging`` (applying
them, interpolating, MergeMany), ``evaluation`` (losses along lambda, barriers), ``reporting`` (tables,
figures, run time) and ``tooling`` (job execution, cost, preflight); ``config``, ``tasks``, ``models``,
``checkpoints``, ``io`` and ``cli`` are shared by all. Scripts under workflow/scripts are thin wrappers.
"""

__version__ = "0.1.0"
