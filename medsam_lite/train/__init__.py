"""Training: ``finetune`` (mask decoder on stored embeddings) and its distributed (torchrun) plumbing."""
