"""Tiny random Qwen-VL checkpoints for tests, demos and CI, saved in Hugging Face format.

`build_tiny_model("qwen2_5_vl", "runs/tiny")` writes a directory that `load_model` reads through
exactly the code path of a real checkpoint: config, safetensors weights, generation config,
processor (image + video) and tokenizer with the official chat template.

Where a tiny model differs from a real one, and why:
  * The tokenizer is a byte-level BPE trained on the spot (well under a second) on a small corpus
    of the words this project's prompts and answers use and of SynthVAU's sentences (so an option is
    about a token per word, as with a real tokenizer), with Qwen's pre-tokenizer (one token per
    digit) and Qwen's special tokens after the learned vocabulary. Byte-level means any text
    encodes and any id sequence decodes, which the reward parsers rely on.
  * The answer tags `<think> </think> <answer> </answer> <glue> </glue>` are single, non-special
    added tokens (as `<think>` is in Qwen3): a tiny model learns the format from a handful of
    tokens, and decoding with `skip_special_tokens=True` keeps them.
  * Defaults: hidden 128 with 2 attention heads, so head_dim is 64, which vLLM's CPU attention
    accepts (it rejects 16); 1 key/value head, so grouped-query attention is exercised; 2 layers.
    The vision tower has the same width and heads, and depth 2. About 1.3-1.7 M parameters.
  * The processor has a small pixel budget; frames normally arrive already sized by the
    VideoSpec and are not resized again (see `vaur1.model.inputs`).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from vaur1.bench.schema import CLASSES, LETTERS
from vaur1.bench.synth import annotation_texts
from vaur1.errors import VaurError
from vaur1.vocab import ANOMALY, ARCHS, NORMAL, Arch

# Qwen2/2.5/3-VL special tokens, in the order the real tokenizers number them.
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
ANSWER_TAGS: tuple[str, ...] = ("<think>", "</think>", "<answer>", "</answer>", "<glue>", "</glue>")

# Qwen2's pre-tokenizer split: words with their leading space, every digit on its own.
_QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)

_CORPUS_SENTENCES: tuple[str, ...] = (
    "Is there any anomaly in the video? If yes, please answer 'Anomaly' and present the precise anomaly "
    "time period. If no, please answer 'Normal' and output time period as <glue>[-1, -1]</glue>.",
    "What type of anomaly appears in the video? If no anomaly appears, please answer 'Normal'.",
    "Answer the question according to the content of the video. Select the answer from the options.",
    "Output your thought process within the <think> </think> tags, then provide your answer within the "
    "<answer> </answer> tags, and the time period in seconds within the <glue> </glue> tags.",
    "system\nYou are a helpful assistant.\nuser\nVideo 1: Picture 1: the video\nassistant\n",
    "<0.5 seconds> <1.5 seconds> <2.5 seconds> <10.0 seconds> <12.0 seconds> <35.8 seconds>",
    "<think>The man runs across the street and a car hits him at the crossing.</think>"
    "<answer>Anomaly</answer><glue>[5.2, 10.4]</glue>",
    "<think>People walk through the mall and nothing unusual happens.</think>"
    "<answer>Normal</answer><glue>[-1, -1]</glue>",
    "<think>A person breaks the window of a shop at night and steals goods.</think><answer>B</answer>",
    "<think>Smoke and fire spread from the building after an explosion.</think><answer>Explosion</answer>",
    "A group of people fight in the parking lot; one of them falls to the ground and does not move.",
    "The suspect is arrested by the police officer near the road after a robbery at the store.",
    "A woman is attacked on the sidewalk, and a man with a gun is shooting at the crowd.",
    "Water floods the street during the storm and a vehicle is stuck in the river.",
    "An object falls from the shelf in the warehouse and hits a worker who is injured.",
    "A child is abused in the room; the camera shows the scene from the corner.",
    "The truck crashes into a motorcycle on the highway; traffic stops and people gather.",
    "Someone sets fire to a car; the arson happens in front of the office.",
    "A patient collapses in the hospital hall and needs medical help; an old man faints.",
    "The vandal damages the train station, spraying paint on the walls and breaking benches.",
    "Food is handled without safety at the restaurant kitchen; the cook drops meat on the floor.",
    "A tractor in the field on the farm rolls over; the agriculture machine stops.",
    "An earthquake shakes the city; a landslide and a natural hazard block the road.",
    "Key evidence: the person looks around, hides the bag, and leaves quickly without paying.",
    "Cause and effect: the driver speeds, loses control, and the vehicle hits the barrier.",
    "Conclusion: the event is abnormal because violence and danger appear in the video.",
    "Location: at the entrance, on the left side, in the middle of the frame, near the door.",
    "Specific anomaly type, detailed explanation, before, after, while, suddenly, then, finally.",
    "A. B. C. D. Option A, option B, option C, option D. The correct option is C.",
    "Start time and end time: from 0.0 to 12.5 seconds, [3.0, 7.5], [12.25, 30.75], [-1.0, -1.0].",
)


def training_corpus() -> list[str]:
    """Text the tiny tokenizer is trained on: tags, digits, class names, options, anomaly words, SynthVAU's texts."""
    numbers = [f"[{s}.{t}, {s + 3}.{9 - t}] {s}{t}" for s in range(10) for t in range(10)]
    classes = [c.replace("_", " ") for c in CLASSES] + list(CLASSES)
    options = [f"{letter}. {cls}" for letter in LETTERS for cls in CLASSES]
    # Answers follow a tag token, so each word also appears at the start of a sequence (no space).
    answers = [*classes, ANOMALY, NORMAL, *LETTERS]
    return [
        *_CORPUS_SENTENCES,
        *annotation_texts(),
        *numbers,
        " ".join(classes),
        " ".join(options),
        " ".join(ANSWER_TAGS),
        *answers,
    ]


def build_tokenizer(vocab_size: int = 1024):
    """A byte-level BPE tokenizer with Qwen's special tokens, trained locally in well under a second."""
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(training_corpus(), trainer)
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    backend.add_tokens([AddedToken(tag, special=False, normalized=False) for tag in ANSWER_TAGS])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(SPECIAL_TOKENS[1:]),
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=32768,
    )


def official_chat_template(arch: Arch) -> str:
    """The official Qwen chat template, byte-identical to the copy TRL ships (SFT needs it verbatim)."""
    name = "qwen3_vl.jinja" if arch == "qwen3_vl" else "qwen2_5_vl.jinja"
    return (resources.files("trl") / "chat_templates" / name).read_text(encoding="utf-8")


def build_processor(arch: Arch, tokenizer):
    """Image + video processor with a small pixel budget, and the official chat template."""
    from transformers import (
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    template = official_chat_template(arch)
    if arch == "qwen3_vl":
        factor = 32
        half = [0.5, 0.5, 0.5]
        image_processor = Qwen2VLImageProcessor(
            patch_size=16,
            temporal_patch_size=2,
            merge_size=2,
            image_mean=half,
            image_std=half,
            size={"shortest_edge": 2 * factor * factor, "longest_edge": 16 * factor * factor},
        )
        # Qwen3-VL's video budget counts all frames (t * h * w): 32 frames of 128x128 here.
        video_processor = Qwen3VLVideoProcessor(
            patch_size=16,
            temporal_patch_size=2,
            merge_size=2,
            size={"shortest_edge": 4 * factor * factor, "longest_edge": 32 * 16 * factor * factor},
            cap_pixels_per_frame=False,
        )
        return Qwen3VLProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=video_processor,
            chat_template=template,
        )
    factor = 28
    pixels = {"min_pixels": 4 * factor * factor, "max_pixels": 16 * factor * factor}
    image_processor = Qwen2VLImageProcessor(patch_size=14, temporal_patch_size=2, merge_size=2, **pixels)
    video_processor = Qwen2VLVideoProcessor(
        patch_size=14, temporal_patch_size=2, merge_size=2, cap_pixels_per_frame=False, **pixels
    )
    processor_cls = Qwen2_5_VLProcessor if arch == "qwen2_5_vl" else Qwen2VLProcessor
    return processor_cls(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=template,
    )


def build_config(
    arch: Arch,
    tokenizer,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    num_kv_heads: int,
    vision_depth: int,
    vision_hidden_size: int,
    vision_heads: int,
):
    """A model config of `arch` sized down, wired to the tiny tokenizer's ids and vocabulary."""
    from transformers import Qwen2_5_VLConfig, Qwen2VLConfig, Qwen3VLConfig

    head_dim = hidden_size // num_heads
    ids = vision_token_ids(tokenizer)
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden_size,
        "intermediate_size": 2 * hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
        "num_key_value_heads": num_kv_heads,
        "max_position_embeddings": 32768,
        "bos_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"),
        "pad_token_id": tokenizer.pad_token_id,
        "dtype": "float32",
    }
    if arch == "qwen3_vl":
        text["head_dim"] = head_dim
        text["rope_parameters"] = {
            "rope_type": "default",
            "rope_theta": 5_000_000.0,
            "mrope_section": _mrope_section(head_dim, spatial_share=5 / 32),
            "mrope_interleaved": True,
        }
        vision = {
            "depth": vision_depth,
            "hidden_size": vision_hidden_size,
            "intermediate_size": 2 * vision_hidden_size,
            "num_heads": vision_heads,
            "out_hidden_size": hidden_size,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "num_position_embeddings": 64,
            "deepstack_visual_indexes": [0],
        }
        return Qwen3VLConfig(text_config=text, vision_config=vision, **ids, dtype="float32")
    text["rope_parameters"] = {
        "rope_type": "default",
        "rope_theta": 1_000_000.0,
        "mrope_section": _mrope_section(head_dim, spatial_share=3 / 16),
    }
    if arch == "qwen2_5_vl":
        vision = {
            "depth": vision_depth,
            "hidden_size": vision_hidden_size,
            "intermediate_size": 2 * vision_hidden_size,
            "num_heads": vision_heads,
            "out_hidden_size": hidden_size,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [vision_depth - 1],
            "tokens_per_second": 2,
        }
        return Qwen2_5_VLConfig(text_config=text, vision_config=vision, **ids, dtype="float32")
    vision = {
        "depth": vision_depth,
        "embed_dim": vision_hidden_size,
        "mlp_ratio": 2,
        "num_heads": vision_heads,
        "hidden_size": hidden_size,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    }
    return Qwen2VLConfig(text_config=text, vision_config=vision, **ids, dtype="float32")


def vision_token_ids(tokenizer) -> dict[str, int]:
    """The config's vision token ids, as the tokenizer numbers them."""
    return {
        "image_token_id": tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        "video_token_id": tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        "vision_start_token_id": tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        "vision_end_token_id": tokenizer.convert_tokens_to_ids("<|vision_end|>"),
    }


def _mrope_section(head_dim: int, spatial_share: float) -> list[int]:
    """Split head_dim/2 rotary frequencies over (time, height, width) in the real models' proportions.

    Qwen2/2.5-VL use [16, 24, 24] for head_dim 128 (share 3/16 each for height and width), Qwen3-VL
    [24, 20, 20] (share 5/32).
    """
    spatial = int(head_dim * spatial_share)
    return [head_dim // 2 - 2 * spatial, spatial, spatial]


def build_tiny_model(
    arch: str,
    out_dir: str | Path,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 2,
    num_kv_heads: int = 1,
    vision_depth: int = 2,
    vision_hidden_size: int | None = None,
    vision_heads: int | None = None,
    vocab_size: int = 1024,
    seed: int = 0,
) -> Path:
    """Build a random tiny Qwen-VL model of `arch` with its tokenizer and processor; save it to `out_dir`.

    The same arguments and seed give the same weights. Returns `out_dir`.
    """
    if arch not in ARCHS:
        raise VaurError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    vision_hidden_size = vision_hidden_size or hidden_size
    vision_heads = vision_heads or num_heads
    _check_sizes(
        hidden_size, num_heads, num_kv_heads, num_layers, vision_depth, vision_hidden_size, vision_heads
    )

    tokenizer = build_tokenizer(vocab_size)
    processor = build_processor(arch, tokenizer)  # type: ignore[arg-type]
    config = build_config(
        arch,  # type: ignore[arg-type]
        tokenizer,
        hidden_size,
        num_layers,
        num_heads,
        num_kv_heads,
        vision_depth,
        vision_hidden_size,
        vision_heads,
    )
    return save_random_model(config, processor, out_dir, torch.float32, seed)


def save_random_model(config, processor, out_dir: str | Path, dtype: torch.dtype, seed: int) -> Path:
    """Instantiate `config` with random weights (seeded) and save it with `processor` to `out_dir`."""
    from transformers import AutoModelForImageTextToText, GenerationConfig

    tokenizer = processor.tokenizer
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config = GenerationConfig(
        eos_token_id=[end_of_turn, tokenizer.pad_token_id],
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=config.text_config.bos_token_id,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def _check_sizes(
    hidden_size: int,
    num_heads: int,
    num_kv_heads: int,
    num_layers: int,
    vision_depth: int,
    vision_hidden_size: int,
    vision_heads: int,
) -> None:
    positive = {
        "hidden_size": hidden_size,
        "num_heads": num_heads,
        "num_kv_heads": num_kv_heads,
        "num_layers": num_layers,
        "vision_depth": vision_depth,
        "vision_hidden_size": vision_hidden_size,
        "vision_heads": vision_heads,
    }
    for name, value in positive.items():
        if value < 1:
            raise VaurError(f"{name} must be at least 1, got {value}")
    if hidden_size % num_heads or (hidden_size // num_heads) % 16:
        raise VaurError(
            f"hidden_size {hidden_size} must split into {num_heads} heads of a multiple of 16 dimensions "
            "(M-RoPE divides head_dim/2 over time, height and width)"
        )
    if num_heads % num_kv_heads:
        raise VaurError(f"num_heads {num_heads} must be a multiple of num_kv_heads {num_kv_heads}")
    if vision_hidden_size % vision_heads or (vision_hidden_size // vision_heads) % 4:
        raise VaurError(
            f"vision_hidden_size {vision_hidden_size} must split into {vision_heads} heads of a multiple "
            "of 4 dimensions (2-D rotary positions)"
        )
