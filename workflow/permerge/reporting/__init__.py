"""Reporting: what a finished run shows -- barrier figures (plots), the README's results tables
(resultsmd, `permerge results`) and the run's end-to-end time per rule (runtime, `permerge runtime`).
"""
