"""Training infrastructure shared by the GRPO and SFT trainers.

- `common`: optimizer and run configs, seeding, optimizer/scheduler builders, the NaN/inf step guard
- `data_order`: a deterministic, resumable sample order
- `checkpoint`: atomic full-state checkpoints, resume resolution, Hugging Face export
- `logging`: metrics.jsonl / tensorboard / samples.jsonl, the progress bar and the console logger
"""
