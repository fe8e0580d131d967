"""From a loaded SFT, GRPO or eval config to the `Workload` that `vaur1.plan.memory` sizes.

The model is built on the meta device from its config: a checkpoint directory's, or for a Hub id
of a real architecture the copy vaur1 ships (`vaur1.model.shipped`), so nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from vaur1.model.load import DTYPES, ModelConfig, lora_target_names, resolve_checkpoint
from vaur1.model.shipped import architecture_config, meta_model
from vaur1.plan.memory import FP32, Job, Shapes, Workload

# Prompt text around the video: system prompt, question, four options and the answer instructions
# come to 150-250 tokens with Qwen's tokenizer on VAU-Bench; the plan takes the upper end.
TEXT_TOKENS = 256
# SFT target lengths: an answer block (with <glue> for TAG), or a <think> block built from the
# annotations and the answer
SFT_TARGET_TOKENS = {"answer": 64, "cot": 512}


@dataclass(frozen=True)
class Model:
    """A model as the plan sees it: where its config came from, its meta-device skeleton and shapes."""

    source: str
    skeleton: torch.nn.Module
    shapes: Shapes
    dtype: torch.dtype


def describe_model(cfg: ModelConfig) -> Model:
    config, source = architecture_config(cfg.name_or_path)
    skeleton = meta_model(config)
    text, vision = config.text_config, config.vision_config
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    vision_hidden = getattr(vision, "embed_dim", None) or vision.hidden_size
    vision_intermediate = getattr(vision, "intermediate_size", None) or vision_hidden * vision.mlp_ratio
    split = set(getattr(skeleton, "_no_split_modules", None) or [])
    blocks = [m for m in skeleton.modules() if type(m).__name__ in split]
    largest = max((sum(p.numel() for p in m.parameters()) for m in blocks), default=0)
    in_channels = getattr(vision, "in_channels", None) or getattr(vision, "in_chans", 3)
    shapes = Shapes(
        parameters=sum(p.numel() for p in skeleton.parameters()),
        vision_parameters=sum(p.numel() for p in skeleton.model.visual.parameters()),
        largest_layer_parameters=largest,
        hidden=text.hidden_size,
        intermediate=text.intermediate_size,
        layers=text.num_hidden_layers,
        q_dim=heads * head_dim,
        kv_dim=text.num_key_value_heads * head_dim,
        vocab=text.vocab_size,
        vision_hidden=vision_hidden,
        vision_intermediate=vision_intermediate,
        vision_depth=vision.depth,
        merge=vision.spatial_merge_size,
        patch_values=in_channels * vision.temporal_patch_size * vision.patch_size**2,
        qk_norm=config.model_type == "qwen3_vl",
        vision_mlp_tensors=4 if config.model_type == "qwen2_5_vl" else 2,
    )
    dtype = DTYPES[cfg.dtype] if cfg.dtype != "auto" else getattr(config, "dtype", None) or torch.float32
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    return Model(source=source, skeleton=skeleton, shapes=shapes, dtype=dtype)


def trainable_parameters(model: Model, cfg: ModelConfig) -> int:
    """Parameters with gradients: LoRA's adapters (r x (in + out) per target), or the model less a
    frozen vision tower."""
    if cfg.lora.enabled:
        modules = dict(model.skeleton.named_modules())
        return sum(
            cfg.lora.r * (modules[name].in_features + modules[name].out_features)
            for name in lora_target_names(model.skeleton, cfg.lora)
        )
    frozen = model.shapes.vision_parameters if cfg.freeze_vision else 0
    return model.shapes.parameters - frozen


def flash_attention(cfg: ModelConfig, dtype: torch.dtype, device: str) -> bool:
    """Whether the run will use flash_attention_2: as configured, or for "auto" on a GPU in bf16/fp16
    (the plan assumes flash-attn is installed there, as the shipped GPU configs intend)."""
    if cfg.attn_implementation != "auto":
        return cfg.attn_implementation == "flash_attention_2"
    return device == "gpu" and dtype in (torch.bfloat16, torch.float16)


def workload(job: Job, cfg: Any, model: Model, visual_tokens: int, device: str = "gpu") -> Workload:
    """The per-process workload of a loaded `GRPOTrainConfig`, `SFTTrainConfig` or `EvalConfig`."""
    weight_bytes = torch.finfo(model.dtype).bits // 8 if model.dtype.is_floating_point else FP32
    lora = cfg.model.lora.enabled
    padding_mask = not flash_attention(cfg.model, model.dtype, device)
    if job == "eval":
        return Workload(
            job=job,
            shapes=model.shapes,
            trainable=0,
            weight_bytes=weight_bytes,
            bf16=weight_bytes == 2,
            separate_reference=False,
            gradient_checkpointing=False,
            prompts=cfg.batch_size,
            samples=1,
            visual_tokens=visual_tokens,
            text_tokens=TEXT_TOKENS,
            new_tokens=cfg.sampling.max_new_tokens,
            lora=lora,
            lora_dropout=False,
            padding_mask=padding_mask,
            vision_trains=False,
        )
    grpo = job == "grpo"
    adapter_dir = resolve_checkpoint(cfg.model.name_or_path).adapter is not None if lora else False
    return Workload(
        job=job,
        shapes=model.shapes,
        trainable=trainable_parameters(model, cfg.model),
        weight_bytes=weight_bytes,
        bf16=cfg.bf16,
        separate_reference=grpo and cfg.loss.beta > 0 and (not lora or adapter_dir),
        gradient_checkpointing=cfg.gradient_checkpointing,
        prompts=cfg.per_device_train_batch_size,
        samples=cfg.num_generations if grpo else 1,
        visual_tokens=visual_tokens,
        text_tokens=TEXT_TOKENS,
        new_tokens=cfg.max_completion_length if grpo else SFT_TARGET_TOKENS[cfg.target],
        lora=lora,
        lora_dropout=lora and cfg.model.lora.dropout > 0,
        padding_mask=padding_mask,
        vision_trains=not cfg.model.freeze_vision
        and (not lora or bool(cfg.model.lora.vision_target_modules)),
        shared_prefix=grpo and cfg.shared_prefix,
    )
