"""The real Qwen-VL architectures, shipped: the published `config.json` of each checkpoint.

With them a model of each architecture can be built with no network: on the meta device to count
and plan (`vaur1 plan`), or with random weights to run at real size (`benchmarks/full_size_cpu.py`),
or narrowed to a few layers for tests (`vaur1 model tiny --like qwen2_5_vl_3b --layers 2`). The files
under `architectures/` are the values of the Instruct checkpoints on the Hugging Face Hub, in the
format each was published in (transformers reads both the old flat Qwen2/2.5-VL layout and Qwen3-VL's
nested one).

    config = architecture_config("Qwen/Qwen2.5-VL-3B-Instruct")   # no download: the shipped copy
    model = meta_model(config)                                    # 3.75 B parameters, no memory
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from vaur1.errors import VaurError
from vaur1.vocab import ARCHITECTURES


def shipped_name(name_or_path: str) -> str | None:
    """The shipped architecture `name_or_path` names (a short name or its Hub id, base or Instruct)."""
    if name_or_path in ARCHITECTURES:
        return name_or_path
    for name, hub_id in ARCHITECTURES.items():
        # the base checkpoints (no -Instruct) share the Instruct ones' architecture
        if name_or_path in (hub_id, hub_id.removesuffix("-Instruct")):
            return name
    return None


def shipped_config(name: str):
    """The transformers config of a shipped architecture (`qwen2_5_vl_3b`, or its Hub id)."""
    from transformers import AutoConfig

    known = shipped_name(name)
    if known is None:
        raise VaurError(f"{name!r} is not a shipped architecture; choose one of {', '.join(ARCHITECTURES)}")
    with resources.as_file(resources.files("vaur1.model") / "architectures" / f"{known}.json") as path:
        return AutoConfig.from_pretrained(str(path))


def architecture_config(name_or_path: str):
    """(config, where it came from) for a checkpoint directory, a Hub id or a shipped name.

    A local directory is read; a Hub id of a shipped architecture uses the shipped copy (no network);
    any other Hub id is looked up like `load_model` would.
    """
    from vaur1.model.load import load_config_of

    if not Path(name_or_path).expanduser().exists():
        known = shipped_name(name_or_path)
        if known is not None:
            return shipped_config(known), f"shipped {known} ({ARCHITECTURES[known]})"
    return load_config_of(name_or_path), name_or_path


def meta_model(config):
    """The model of `config` on the meta device: every parameter's shape, no memory, no weights."""
    import torch
    from transformers import AutoModelForImageTextToText

    with torch.device("meta"):
        return AutoModelForImageTextToText.from_config(config)


def narrowed_config(name: str, layers: int | None, vision_depth: int | None, tokenizer):
    """The shipped architecture `name` with `layers` language layers and `vision_depth` vision blocks,
    wired to `tokenizer`'s special tokens; every width, head count, the vocabulary size and the rotary
    layout stay the real ones. The vision tower's full-attention blocks (Qwen2.5-VL) and DeepStack
    taps (Qwen3-VL) move to the same relative depths. None keeps the real depth."""
    from vaur1.model.tiny import vision_token_ids

    config = shipped_config(name)
    text, vision = config.text_config, config.vision_config
    layers = text.num_hidden_layers if layers is None else layers
    vision_depth = vision.depth if vision_depth is None else vision_depth
    if layers < 1 or vision_depth < 1:
        raise VaurError(f"layers and vision depth must be at least 1, got {layers} and {vision_depth}")
    if len(tokenizer) > text.vocab_size:
        raise VaurError(f"the tokenizer has {len(tokenizer)} tokens, more than {name}'s {text.vocab_size}")
    real_depth = vision.depth
    text.num_hidden_layers = layers
    if hasattr(text, "max_window_layers"):
        text.max_window_layers = layers
    if getattr(text, "layer_types", None):
        text.layer_types = text.layer_types[:layers]
    vision.depth = vision_depth
    for key in ("fullatt_block_indexes", "deepstack_visual_indexes"):
        if getattr(vision, key, None):
            setattr(vision, key, _same_relative_depth(getattr(vision, key), real_depth, vision_depth))
    for key, value in vision_token_ids(tokenizer).items():
        setattr(config, key, value)
    text.bos_token_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    text.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    text.pad_token_id = tokenizer.pad_token_id
    return config


def _same_relative_depth(indexes: list[int], depth: int, new_depth: int) -> list[int]:
    """Block indexes of a `depth`-block tower moved to the same relative depth in `new_depth` blocks."""
    return sorted({max(0, (index + 1) * new_depth // depth - 1) for index in indexes})


def build_like_model(
    name: str,
    out_dir: str | Path,
    layers: int | None = 2,
    vision_depth: int | None = 2,
    dtype: str = "bfloat16",
    seed: int = 0,
) -> Path:
    """Save a random copy of the real architecture `name` narrowed to `layers` (see `narrowed_config`),
    with vaur1's tiny tokenizer and processor, as `build_tiny_model` does for the tiny sizes."""
    import torch

    from vaur1.model.load import DTYPES
    from vaur1.model.tiny import build_processor, build_tokenizer, save_random_model

    if dtype not in DTYPES or dtype == "auto":
        raise VaurError(f"dtype {dtype!r} is not float32, bfloat16 or float16")
    tokenizer = build_tokenizer()
    config = narrowed_config(name, layers, vision_depth, tokenizer)
    processor = build_processor(config.model_type, tokenizer)
    weights = DTYPES[dtype]
    assert isinstance(weights, torch.dtype)
    config.dtype = weights
    return save_random_model(config, processor, out_dir, weights, seed)
