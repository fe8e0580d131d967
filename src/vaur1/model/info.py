"""What `vaur1 model info` shows of a checkpoint, read from its config and processor (no weights)."""

from __future__ import annotations

from typing import Any

from vaur1.errors import VaurError


def checkpoint_info(name_or_path: str) -> dict[str, Any]:
    """What `vaur1 model info` shows, read from the config and processor (weights are not loaded)."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vaur1.model.generate import vision_placeholder_ids
    from vaur1.model.inputs import processor_factor, temporal_patch
    from vaur1.model.load import count_parameters, load_config_of, resolve_checkpoint
    from vaur1.model.tiny import official_chat_template

    checkpoint = resolve_checkpoint(name_or_path)
    config = load_config_of(name_or_path)
    try:
        processor = AutoProcessor.from_pretrained(checkpoint.model, local_files_only=checkpoint.local)
    except (OSError, ValueError) as err:
        raise VaurError(f"{checkpoint.model}: cannot load the processor: {err}") from None
    with torch.device("meta"):
        skeleton = AutoModelForImageTextToText.from_config(config)
    counts = count_parameters(skeleton)
    text, vision = config.text_config, config.vision_config
    template = getattr(processor, "chat_template", None)
    official = official_chat_template(config.model_type)
    video_processor, image_processor = processor.video_processor, processor.image_processor
    return {
        "arch": config.model_type,
        "class": (config.architectures or ["?"])[0],
        "dtype": str(getattr(config, "dtype", None) or getattr(text, "dtype", "?")).removeprefix("torch."),
        "adapter": str(checkpoint.adapter) if checkpoint.adapter else None,
        "parameters": {"total": counts.total, "vision": counts.vision, "text": counts.text},
        "text": {
            "hidden_size": text.hidden_size,
            "layers": text.num_hidden_layers,
            "heads": text.num_attention_heads,
            "kv_heads": text.num_key_value_heads,
            "head_dim": getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads,
            "vocab_size": text.vocab_size,
            "mrope_section": (text.rope_parameters or {}).get("mrope_section"),
        },
        "vision": {
            "depth": vision.depth,
            "hidden_size": getattr(vision, "embed_dim", None) or vision.hidden_size,
            "heads": vision.num_heads,
            "patch_size": vision.patch_size,
            "temporal_patch_size": vision.temporal_patch_size,
        },
        "processor": {
            "class": type(processor).__name__,
            "factor": processor_factor(processor),
            "temporal_patch": temporal_patch(processor),
            "video_min_pixels": video_processor.size["shortest_edge"],
            "video_max_pixels": video_processor.size["longest_edge"],
            "video_budget": "all frames" if config.model_type == "qwen3_vl" else "per frame",
            "image_min_pixels": image_processor.size["shortest_edge"],
            "image_max_pixels": image_processor.size["longest_edge"],
            "vision_placeholder_ids": vision_placeholder_ids(processor),
            "chat_template": "official" if template == official else ("custom" if template else "none"),
        },
    }
