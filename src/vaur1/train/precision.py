"""Which dtype the trainable weights are held in, and which engine keeps them.

A bf16 weight cannot take an update smaller than about 1/256 of its size: at the learning rates of
RL fine-tuning (1e-6) AdamW's updates are below that for nearly every weight, so a model loaded in bf16
and stepped by a plain optimizer barely trains (10 steps at 1e-6 moved 1.9% of the weights here, against
99.99% with fp32 weights). So, as HF Trainer does, the weights the optimizer updates are fp32 and the
compute runs in bf16 autocast; frozen weights (the vision tower when frozen, LoRA's base, the reference
model) may stay in bf16. DeepSpeed keeps fp32 master weights itself when its bf16 is on, so there the
model stays as the engine casts it.

    engine = engine_of(accelerator)                  # "single", "ddp", "deepspeed" or "fsdp"
    dtype = hold_trainable_in_fp32(model, bf16=cfg.bf16, engine=engine)   # before accelerator.prepare
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from vaur1.errors import ConfigError

log = logging.getLogger("vaur1.train")

LOW_PRECISION = (torch.bfloat16, torch.float16)


def engine_of(accelerator: Any) -> str:
    """The engine that wraps the model: single (one process), ddp, deepspeed or fsdp."""
    from accelerate.utils import DistributedType

    kind = accelerator.distributed_type
    if kind == DistributedType.DEEPSPEED:
        return "deepspeed"
    if kind == DistributedType.FSDP:
        return "fsdp"
    return "ddp" if accelerator.num_processes > 1 else "single"


def deepspeed_mixed_precision(accelerator: Any) -> bool:
    """Whether the DeepSpeed engine trains in bf16 or fp16 (and so keeps fp32 master weights)."""
    config = accelerator.state.deepspeed_plugin.deepspeed_config
    return any(bool((config.get(key) or {}).get("enabled")) for key in ("bf16", "fp16"))


def hold_trainable_in_fp32(
    model: torch.nn.Module, bf16: bool, engine: str, master_weights: bool = False
) -> torch.dtype:
    """Upcast the trainable low-precision weights of `model` to fp32 where no engine keeps fp32 master
    weights; return the dtype the model was loaded in (what an export writes).

    `master_weights`: the engine keeps fp32 copies itself (DeepSpeed with bf16/fp16 on). Without
    them, trainable bf16/fp16 weights with `bf16` off would be updated in low precision: a config
    error, never a silent default.
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    dtypes = [p.dtype for p in model.parameters() if p.is_floating_point()]
    loaded = max(set(dtypes), key=dtypes.count) if dtypes else torch.float32
    low = [p for p in trainable if p.dtype in LOW_PRECISION]
    if not low:
        return loaded
    dtype = str(low[0].dtype).removeprefix("torch.")
    if master_weights:
        return loaded
    if engine == "deepspeed":
        raise ConfigError(
            f"the model's trainable weights are {dtype} and DeepSpeed runs without bf16 or fp16, so it would "
            "update them in low precision: set bf16: true in the training config (DeepSpeed then keeps fp32 "
            "master weights) or model.dtype: float32"
        )
    if not bf16:
        raise ConfigError(
            f"model.dtype loads the trainable weights in {dtype} and bf16 is false: a plain AdamW would update "
            f"{dtype} weights and lose most updates at small learning rates. Set bf16: true (fp32 weights, "
            "bf16 compute) or model.dtype: float32"
        )
    for param in low:
        param.data = param.data.float()
    log.info(
        "holding %d trainable weights in fp32 (bf16 autocast compute); %s frozen weights stay %s",
        sum(p.numel() for p in low),
        f"{sum(p.numel() for p in model.parameters() if not p.requires_grad):,}",
        dtype,
    )
    return loaded
