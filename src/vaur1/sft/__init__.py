"""Supervised fine-tuning on video prompts: the paper's SFT baseline and a warm start for GRPO."""
