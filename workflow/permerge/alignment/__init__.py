"""Alignment: the permutation symmetries of an encoder as data (spec), the matching options
(variants, matchers), streamed activation statistics (stats), and the matchers that turn them -- or the
weights alone (weight_matching) -- into permutations (matching). Input: two trained models and text;
output: one permutation per hidden space that maps model B onto model A.
"""
