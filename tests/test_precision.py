"""Mixed precision that trains: fp32 trainable weights under bf16 autocast, never bf16 AdamW updates."""

from __future__ import annotations

import json

import pytest
import torch
from accelerate.state import AcceleratorState
from safetensors.torch import load_file

import model_fixtures
import train_helpers
from train_helpers import sft_config
from vaur1.errors import ConfigError
from vaur1.sft.trainer import train as train_sft

ARCH = "qwen2_5_vl"
# the paper's learning rate, where bf16 weights stepped by a plain AdamW barely change
SMALL_STEPS = [
    "run.max_steps=10",
    "run.save_steps=10",
    "optim.learning_rate=1e-6",
    "optim.lr_scheduler=constant",
]


def trained_state(out) -> dict[str, torch.Tensor]:
    """The weights the optimizer held at the last step (the checkpoint's training state)."""
    return load_file(str(out / "checkpoint-10" / "state" / "model.safetensors"))


@pytest.mark.slow
def test_a_bf16_model_trains_in_fp32_under_bf16_autocast_like_the_fp32_run(
    tiny_models, synth_bench, tmp_path
):
    initial = {k: v.float() for k, v in model_fixtures.load_tiny(tiny_models[ARCH])[0].state_dict().items()}
    runs = {}
    for name, overrides in {
        "bf16": ["model.dtype=bfloat16", "bf16=true"],
        "fp32": ["model.dtype=float32", "bf16=false"],
    }.items():
        AcceleratorState._reset_state(True)  # each run builds its own Accelerator, as a new process would
        train_sft(sft_config(tmp_path / name, tiny_models[ARCH], synth_bench, [*SMALL_STEPS, *overrides]))
        runs[name] = trained_state(tmp_path / name)

    mixed, full = runs["bf16"], runs["fp32"]
    assert all(t.dtype == torch.float32 for t in mixed.values())  # the optimizer held fp32 weights
    start = {k: v.to(torch.bfloat16).float() for k, v in initial.items()}  # what the bf16 load gave
    # every weight the fp32 run moved (embedding rows of tokens never seen get no gradient in either)
    should_move = {k: full[k] != initial[k] for k in full}
    moved = sum(int(((mixed[k] != start[k]) & should_move[k]).sum()) for k in mixed)
    total = sum(int(m.sum()) for m in should_move.values())
    assert total > 0.5 * sum(t.numel() for t in full.values())
    assert moved / total >= 0.99, f"only {moved / total:.1%} of the weights moved"

    update_mixed = torch.cat([(mixed[k] - start[k]).flatten() for k in sorted(mixed)])
    update_full = torch.cat([(full[k] - initial[k]).flatten() for k in sorted(full)])
    cosine = torch.nn.functional.cosine_similarity(update_mixed, update_full, dim=0)
    assert cosine > 0.9, f"the bf16-autocast update's cosine with the fp32 update is {cosine:.3f}"
    # the export is written in the dtype the checkpoint was loaded in
    exported = train_helpers.safetensors_weights(tmp_path / "bf16" / "final")
    assert {t.dtype for t in exported.values()} == {torch.bfloat16}
    # ... and its config.json says so, so that dtype "auto" (evaluation's default) reloads it in bf16
    config = json.loads((tmp_path / "bf16" / "final" / "config.json").read_text(encoding="utf-8"))
    assert config["dtype"] == "bfloat16"
    assert all(sub.get("dtype", "bfloat16") == "bfloat16" for sub in config.values() if isinstance(sub, dict))
    reloaded, _ = model_fixtures.load_tiny(tmp_path / "bf16" / "final")
    assert {p.dtype for p in reloaded.parameters()} == {torch.bfloat16}
    fp32_config = json.loads((tmp_path / "fp32" / "final" / "config.json").read_text(encoding="utf-8"))
    assert fp32_config["dtype"] == "float32"


def test_bf16_weights_without_mixed_precision_are_a_config_error(tiny_models, synth_bench, tmp_path):
    cfg = sft_config(tmp_path / "out", tiny_models[ARCH], synth_bench, ["model.dtype=bfloat16", "bf16=false"])
    with pytest.raises(ConfigError, match="bf16: true"):
        train_sft(cfg)
