"""Evaluation: MLM and GLUE-style losses along the interpolation path and the lambda sweep
(evaluate), the encoder's final hidden states at the positions a loss reads (encode), and loss barriers
from per-lambda loss files and their summaries over pairs (barriers).
"""
