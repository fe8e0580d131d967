"""Qwen-VL models: loading checkpoints, tiny random models, processor inputs and generation.

Importing this package applies the torchvision shim (see `vaur1._torchvision_shim`): every path
that loads a model or a processor comes through here, and its modules import transformers only
inside the functions that use it, after the shim.
"""

from vaur1._torchvision_shim import install_torchvision_shim
from vaur1.model.generate import (
    GenerationOutput,
    SamplingConfig,
    completion_mask,
    end_of_turn_id,
    generate,
    generation_config,
    vision_placeholder_ids,
)
from vaur1.model.inputs import (
    IGNORE_INDEX,
    append_completions,
    build_inputs,
    build_sft_inputs,
    processor_factor,
    repeat_inputs,
    temporal_patch,
    video_metadata,
)
from vaur1.model.load import (
    LoraConfig,
    ModelConfig,
    ParameterCounts,
    apply_lora,
    count_parameters,
    freeze_vision_tower,
    load_model,
    lora_target_names,
    vision_tower,
)
from vaur1.model.tiny import build_tiny_model
from vaur1.vocab import ARCHS

install_torchvision_shim()

__all__ = [
    "ARCHS",
    "IGNORE_INDEX",
    "GenerationOutput",
    "LoraConfig",
    "ModelConfig",
    "ParameterCounts",
    "SamplingConfig",
    "append_completions",
    "apply_lora",
    "build_inputs",
    "build_sft_inputs",
    "build_tiny_model",
    "completion_mask",
    "count_parameters",
    "end_of_turn_id",
    "freeze_vision_tower",
    "generate",
    "generation_config",
    "load_model",
    "lora_target_names",
    "processor_factor",
    "repeat_inputs",
    "temporal_patch",
    "video_metadata",
    "vision_placeholder_ids",
    "vision_tower",
]
