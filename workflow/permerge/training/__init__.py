"""Training: pre-training tiny BERT seeds from scratch (pretrain), fine-tuning a seed on a
GLUE(-shaped) task (finetune), the one training loop both use (train), resumable training state (resume),
intermediate pre-training checkpoints (steps), and the bag-of-words baseline a fine-tuned seed must beat
(baseline).
"""
