from __future__ import annotations

import math
import re

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoProcessor, GPT2Config

from model_fixtures import checkpointing_on, load_tiny, make_video, video_prompt
from vaur1.bench.schema import CLASSES
from vaur1.bench.synth import NORMAL_OPTIONS, SCENES, VARIANTS
from vaur1.config import from_dict
from vaur1.errors import ConfigError, VaurError
from vaur1.model import (
    ARCHS,
    IGNORE_INDEX,
    LoraConfig,
    ModelConfig,
    SamplingConfig,
    apply_lora,
    build_inputs,
    build_sft_inputs,
    build_tiny_model,
    count_parameters,
    freeze_vision_tower,
    generate,
    lora_target_names,
    vision_tower,
)
from vaur1.model.load import LANGUAGE_PROJECTIONS, vision_tower_prefix
from vaur1.model.tiny import ANSWER_TAGS, SPECIAL_TOKENS, build_tokenizer, official_chat_template

SAVED_FILES = {
    "chat_template.jinja",
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
}


def sft_batch(processor, answer: str = "<think>A car hits a man.</think><answer>Anomaly</answer>"):
    conversation = [*video_prompt(), {"role": "assistant", "content": answer}]
    return build_sft_inputs(processor, [conversation], [make_video(processor)])


def vision_grads(model) -> list[torch.Tensor | None]:
    return [p.grad for p in vision_tower(model).parameters()]


@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_model_is_saved_in_hugging_face_format_with_consistent_ids(tiny_models, arch):
    path = tiny_models[arch]
    assert {p.name for p in path.iterdir()} >= SAVED_FILES
    model, processor = load_tiny(path)
    tokenizer, config = processor.tokenizer, model.config
    assert config.model_type == arch
    assert config.text_config.vocab_size == len(tokenizer)
    for key, token in [
        ("image_token_id", "<|image_pad|>"),
        ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"),
        ("vision_end_token_id", "<|vision_end|>"),
    ]:
        assert getattr(config, key) == tokenizer.convert_tokens_to_ids(token), key
    assert (path / "chat_template.jinja").read_text(encoding="utf-8") == official_chat_template(arch)
    assert processor.chat_template == official_chat_template(arch)
    assert tokenizer.padding_side == "left"
    head_dim = config.text_config.hidden_size // config.text_config.num_attention_heads
    assert head_dim == 64  # vLLM's CPU attention needs it
    assert sum(config.text_config.rope_parameters["mrope_section"]) == head_dim // 2
    assert count_parameters(model).total < 3_000_000


def test_tokenizer_has_single_tag_tokens_and_round_trips_any_text():
    tokenizer = build_tokenizer()
    for token in (*SPECIAL_TOKENS, *ANSWER_TAGS):
        assert len(tokenizer(token, add_special_tokens=False)["input_ids"]) == 1, token
    ids = tokenizer("[12.5, 30.75]", add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids)[:5] == ["[", "1", "2", ".", "5"]
    for word in (*CLASSES, "Anomaly", "Normal"):
        ids = tokenizer(f"<answer>{word}</answer>", add_special_tokens=False)["input_ids"]
        assert len(ids) == 2 + len(re.split("[ _]", word)), word  # one token per word between the tags
    text = "<think>Ein Mann fällt 🙂 at 3.5s</think><answer>People_falling</answer><glue>[3.5, 9.0]</glue>"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
    special_only = tokenizer("<|im_start|>assistant\n<answer>B</answer><|im_end|>")["input_ids"]
    assert tokenizer.decode(special_only, skip_special_tokens=True) == "assistant\n<answer>B</answer>"


def test_tokenizer_knows_the_words_of_synthvau_options():
    tokenizer = build_tokenizer()
    options = [v.option for pair in VARIANTS.values() for v in pair]
    options += [text.format(scene=scene) for text in NORMAL_OPTIONS for scene in SCENES.values()]
    for option in options:
        # about a token per word, as a real tokenizer has (the corpus without them: 14 for the fistfight)
        assert len(tokenizer(option, add_special_tokens=False)["input_ids"]) <= len(option.split()) + 3, (
            option
        )
    for word in (" fire", " explosion", " thief", " pedestrian", " fight"):
        assert len(tokenizer(word, add_special_tokens=False)["input_ids"]) == 1, word


def test_same_seed_gives_same_weights_and_another_seed_differs(tmp_path):
    sizes = {"hidden_size": 64, "num_layers": 1}
    first = load_file(build_tiny_model("qwen2_5_vl", tmp_path / "a", seed=1, **sizes) / "model.safetensors")
    again = load_file(build_tiny_model("qwen2_5_vl", tmp_path / "b", seed=1, **sizes) / "model.safetensors")
    other = load_file(build_tiny_model("qwen2_5_vl", tmp_path / "c", seed=2, **sizes) / "model.safetensors")
    assert first.keys() == again.keys() == other.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_build_rejects_unknown_arch_and_bad_sizes(tmp_path):
    with pytest.raises(VaurError, match="unknown architecture 'llava'"):
        build_tiny_model("llava", tmp_path)
    with pytest.raises(VaurError, match="hidden_size 100"):
        build_tiny_model("qwen2_vl", tmp_path, hidden_size=100)


@pytest.mark.parametrize("arch", ARCHS)
def test_backward_reaches_the_vision_tower(tiny_models, arch):
    model, processor = load_tiny(tiny_models[arch])
    model.train()
    batch = sft_batch(processor)
    loss = model(**batch).loss
    assert math.log(len(processor.tokenizer)) - 1.5 < loss.item() < math.log(len(processor.tokenizer)) + 1.5
    loss.backward()
    grads = vision_grads(model)
    assert all(g is not None for g in grads)
    assert all(torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum().item() for g in grads) > 0
    assert model.get_input_embeddings().weight.grad is not None


def test_sft_labels_cover_the_answer_and_end_of_turn_only(tiny_models):
    processor = AutoProcessor.from_pretrained(tiny_models["qwen2_5_vl"])
    batch = sft_batch(processor, answer="<answer>Normal</answer><glue>[-1, -1]</glue>")
    labels = batch["labels"][0]
    kept = labels[labels != IGNORE_INDEX]
    assert processor.tokenizer.decode(kept) == "<answer>Normal</answer><glue>[-1, -1]</glue><|im_end|>"
    assert (labels[: -kept.numel() - 1] == IGNORE_INDEX).all()


def test_frozen_vision_tower_gets_no_gradients(tiny_models):
    model, processor = load_tiny(tiny_models["qwen2_5_vl"], freeze_vision=True)
    model(**sft_batch(processor)).loss.backward()
    assert all(not p.requires_grad and p.grad is None for p in vision_tower(model).parameters())
    assert model.get_input_embeddings().weight.grad is not None
    counts = count_parameters(model)
    assert counts.trainable == counts.total - counts.vision


@pytest.mark.parametrize("arch", ARCHS)
def test_lora_targets_the_language_model_only_by_default(tiny_models, arch):
    model, processor = load_tiny(tiny_models[arch], lora=LoraConfig(enabled=True, r=4))
    prefix = vision_tower_prefix(model) + "."
    adapted = [name for name, module in model.get_base_model().named_modules() if hasattr(module, "lora_A")]
    layers = model.config.text_config.num_hidden_layers
    assert len(adapted) == layers * len(LANGUAGE_PROJECTIONS)
    assert not any(name.startswith(prefix) for name in adapted)
    assert {name.rsplit(".", 1)[1] for name in adapted} == set(LANGUAGE_PROJECTIONS)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    model(**sft_batch(processor)).loss.backward()
    assert all(p.grad is None for p in vision_tower(model).parameters())


def test_lora_reaches_the_vision_tower_only_when_asked(tiny_models):
    model, _ = load_tiny(tiny_models["qwen2_5_vl"])
    prefix = vision_tower_prefix(model) + "."
    # Qwen2.5-VL's vision MLP is also named gate/up/down_proj: a bare suffix match would take it.
    assert any(name.startswith(prefix) and name.endswith("gate_proj") for name, _ in model.named_modules())
    asked = LoraConfig(enabled=True, r=4, target_modules=["q_proj"], vision_target_modules=["qkv"])
    names = lora_target_names(model, asked)
    depth = model.config.vision_config.depth
    assert sorted(n for n in names if n.startswith(prefix)) == [
        f"{prefix}blocks.{i}.attn.qkv" for i in range(depth)
    ]
    assert all(n.endswith("q_proj") for n in names if not n.startswith(prefix))
    wrapped = apply_lora(model, asked)
    assert vision_tower(wrapped) is vision_tower(model)
    assert any(p.requires_grad for p in vision_tower(wrapped).parameters())
    with pytest.raises(VaurError, match="match no linear layer"):
        apply_lora(load_tiny(tiny_models["qwen2_5_vl"])[0], LoraConfig(enabled=True, target_modules=["nope"]))


def test_lora_adapter_directory_loads_onto_its_base(tiny_models, tmp_path):
    model, processor = load_tiny(tiny_models["qwen3_vl"], lora=LoraConfig(enabled=True, r=4))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.fill_(0.01)
    model.save_pretrained(tmp_path / "adapter")
    batch = sft_batch(processor)
    with torch.no_grad():
        expected = model(**batch).logits
    reloaded, _ = load_tiny(tmp_path / "adapter")
    with torch.no_grad():
        assert torch.allclose(reloaded(**batch).logits, expected, atol=1e-5)
    assert not any(p.requires_grad for p in reloaded.parameters())
    prompt = build_inputs(processor, [video_prompt()], [make_video(processor)])
    out = generate(reloaded, processor, prompt, SamplingConfig(max_new_tokens=3, num_return_sequences=2))
    assert out.completion_ids.shape[0] == 2 and len(out.texts) == 2


def test_gradient_checkpointing_keeps_gradients_flowing(tiny_models):
    model, processor = load_tiny(tiny_models["qwen2_vl"], gradient_checkpointing=True)
    model.train()
    model(**sft_batch(processor)).loss.backward()
    assert checkpointing_on(model)
    assert all(g is not None for g in vision_grads(model))


def test_freeze_vision_tower_on_a_plain_model(tiny_models):
    model, _ = load_tiny(tiny_models["qwen3_vl"])
    freeze_vision_tower(model)
    assert not any(p.requires_grad for p in vision_tower(model).parameters())
    assert all(p.requires_grad for p in model.model.language_model.parameters())


def test_load_model_names_the_path_when_it_is_not_a_qwen_vl_checkpoint(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(VaurError, match=f"{missing}: no such checkpoint directory"):
        load_tiny(missing)
    with pytest.raises(VaurError, match="not a model checkpoint"):
        load_tiny(tmp_path)
    GPT2Config(n_layer=1).save_pretrained(tmp_path / "gpt2")
    with pytest.raises(VaurError, match=r"gpt2: a gpt2 checkpoint, not Qwen2-VL"):
        load_tiny(tmp_path / "gpt2")


def test_model_config_from_yaml_data_is_validated():
    cfg = from_dict(
        ModelConfig, {"name_or_path": "x/y", "dtype": "bfloat16", "lora": {"enabled": True, "r": 8}}
    )
    assert cfg.lora.r == 8 and cfg.lora.target_modules == list(LANGUAGE_PROJECTIONS)
    with pytest.raises(ConfigError, match="dtype"):
        from_dict(ModelConfig, {"name_or_path": "x/y", "dtype": "float64"})
    with pytest.raises(ConfigError, match="not both"):
        from_dict(ModelConfig, {"name_or_path": "x/y", "device": "cpu", "device_map": "auto"})
    with pytest.raises(ConfigError, match="freeze_vision"):
        from_dict(
            ModelConfig,
            {
                "name_or_path": "x/y",
                "freeze_vision": True,
                "lora": {"enabled": True, "vision_target_modules": ["qkv"]},
            },
        )
    with pytest.raises(ConfigError, match="flash_attention_2"):
        from_dict(
            ModelConfig,
            {"name_or_path": "x/y", "dtype": "float32", "attn_implementation": "flash_attention_2"},
        )
    with pytest.raises(ConfigError, match="name_or_path is empty"):
        from_dict(ModelConfig, {})


def test_auto_attention_takes_flash_attention_only_where_it_can_run(monkeypatch, tiny_models, caplog):
    import importlib.util
    import logging

    from vaur1.model.load import ModelConfig, attention_for

    auto = ModelConfig(name_or_path="x")
    assert attention_for(ModelConfig(name_or_path="x", attn_implementation="eager"), None)[0] == "eager"
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: object() if name == "flash_attn" else real_find_spec(name, *a),
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert attention_for(auto, torch.bfloat16) == ("flash_attention_2", "flash-attn is installed")
    assert attention_for(auto, torch.float32)[0] == "sdpa"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert attention_for(auto, torch.bfloat16) == ("sdpa", "no CUDA device")
    monkeypatch.undo()
    # here (no flash-attn): sdpa, and the load says so
    with caplog.at_level(logging.INFO, logger="vaur1"):
        model, _ = load_tiny(tiny_models["qwen2_5_vl"])
    assert model.config._attn_implementation == "sdpa"
    assert any("attention: sdpa (flash-attn is not installed)" in r.getMessage() for r in caplog.records)


def test_auto_dtype_reads_the_config_then_the_weights(tiny_models, tmp_path):
    """`model.dtype: auto` is the checkpoint's config.json dtype; a config without one falls back on its
    weights' dtype, as transformers' own auto does; an explicit dtype wins."""
    import json

    from vaur1.model.load import resolve_dtype

    source = tiny_models["qwen2_5_vl"]
    assert resolve_dtype("auto", str(source)) == "float32"
    assert resolve_dtype("bfloat16", str(source)) == "bfloat16"
    model, processor = load_tiny(source)
    copy = tmp_path / "bf16-no-dtype"
    model.to(torch.bfloat16).save_pretrained(copy)
    processor.save_pretrained(copy)
    config = json.loads((copy / "config.json").read_text(encoding="utf-8"))
    assert config["dtype"] == "bfloat16"
    assert resolve_dtype("auto", str(copy)) == "bfloat16"

    def without_dtype(node):
        if isinstance(node, dict):
            return {k: without_dtype(v) for k, v in node.items() if k not in ("dtype", "torch_dtype")}
        return node

    (copy / "config.json").write_text(json.dumps(without_dtype(config)), encoding="utf-8")
    assert resolve_dtype("auto", str(copy)) == "bfloat16"  # from the weights
    reloaded, _ = load_tiny(copy)
    assert {p.dtype for p in reloaded.parameters()} == {torch.bfloat16}
