"""Evaluation: metrics, the VAU-Eval LLM judge and the offline reasoning scorer."""
