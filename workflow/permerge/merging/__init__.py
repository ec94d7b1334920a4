"""Merging: applying permutations to a model's parameters (permute), interpolating two aligned
models, theta(lam) = (1 - lam) theta_A + lam theta_B' (interpolate), and merging all seeds at once
(many, MergeMany). Input: models and permutations; output: merged parameters.
"""
