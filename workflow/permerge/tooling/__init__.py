"""Tooling: how jobs run and what they cost -- CUDA preflight (device), the SLURM profile's checks
(cluster), warm script jobs forked from one interpreter (warm), memory and disk per rule at a
configuration's scale (footprint), live tensor bytes (memtrace) and the method's cost relative to forward
passes (bench, `permerge bench`).
"""
