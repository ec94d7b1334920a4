"""permerge: align and merge BERTs trained from different seeds (Verma & Elbayad, TMLR 2024).

Modules: spec (BERT permutation symmetries as data), variants (matching options), stats (streamed
activation statistics), matching (LSA matchers), apply (permute / interpolate / save), data builders,
pre-training and evaluation helpers. Scripts under workflow/scripts are thin wrappers around these.
"""

__version__ = "0.1.0"
