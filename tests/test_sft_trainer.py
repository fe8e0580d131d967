"""The SFT trainer on a tiny Qwen2.5-VL and SynthVAU clips: the label mask, a falling loss, the output
as a start for GRPO and evaluation, resume, and early stopping with the best model kept."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace

import pytest

import train_helpers
from model_fixtures import load_tiny
from train_helpers import (
    SHORT_PROMPTS,
    changed,
    grpo_config,
    killed_after,
    read_jsonl,
    same_weights,
    sft_config,
)
from vaur1.data import DataConfig
from vaur1.errors import ConfigError
from vaur1.eval.config import load_eval_config
from vaur1.model import SamplingConfig, build_inputs, generate, load_model
from vaur1.model.inputs import IGNORE_INDEX
from vaur1.model.load import ModelConfig
from vaur1.prompts import PromptConfig, build_messages, target_text
from vaur1.rl import trainer as grpo_trainer
from vaur1.sft import trainer as sft_trainer
from vaur1.sft.config import SFTTrainConfig
from vaur1.sft.trainer import collate, train
from vaur1.video.cache import CachedDecoder
from vaur1.video.spec import VideoSpec, read_model_spec

pytestmark = pytest.mark.usefixtures("one_thread")  # one intra-op thread: faster on a shared 2-core CPU

ARCH = "qwen2_5_vl"


@pytest.mark.parametrize("target", ["answer", "cot"])
def test_labels_cover_exactly_the_assistant_tokens_of_a_mixed_length_batch(
    tiny_models, synth_bench, tmp_path, target
):
    _, processor = load_tiny(tiny_models[ARCH])
    cfg = sft_config(tmp_path, tiny_models[ARCH], synth_bench, [f"target={target}"])
    data = DataConfig(bench=str(synth_bench), tasks=["qa", "tag", "cls", "reasoning"], max_per_task=4)
    by_task = {task: [e for e in data.load() if e.task == task] for task in ("qa", "tag", "cls", "reasoning")}
    examples = [by_task["qa"][0], by_task["tag"][1], by_task["cls"][2], by_task["reasoning"][3]]  # 4 clips
    # at 1 fps the 2-4 s clips give 2 or 4 frames: videos of different lengths in one batch
    decoder = CachedDecoder(
        VideoSpec(fps=1.0, min_frames=1, min_pixels=784, max_pixels=784, total_pixels=None), None
    )
    videos = [decoder.get(data.roots().resolve(example)) for example in examples]
    batch = collate(processor, examples, videos, cfg)
    assert len({int(t) for t in batch["video_grid_thw"][:, 0]}) > 1
    assert len({int(n) for n in batch["attention_mask"].sum(dim=1)}) > 1  # rows of different lengths

    tokenizer = processor.tokenizer
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    for row, example in enumerate(examples):
        labels, ids = batch["labels"][row], batch["input_ids"][row]
        positions = (labels != IGNORE_INDEX).nonzero().flatten().tolist()
        assert positions == list(range(positions[0], positions[-1] + 1))  # one contiguous span
        assert labels[positions].tolist() == ids[positions].tolist()
        expected = target_text(example, "direct" if target == "answer" else "cot") + "<|im_end|>"
        assert tokenizer.decode(ids[positions], skip_special_tokens=False) == expected
        assert int(ids[positions[-1]]) == end_of_turn
        # everything before the span is the prompt (as GRPO and evaluation send it), after it only "\n"
        prompt = build_messages(example, cfg.prompt_mode, PromptConfig(**SHORT_PROMPTS))
        rendered = processor.apply_chat_template([prompt], add_generation_prompt=True, tokenize=False)[0]
        before = tokenizer.decode(ids[: positions[0]][batch["attention_mask"][row][: positions[0]].bool()])
        assert before.replace("<|video_pad|>", "") == rendered.replace("<|video_pad|>", "")
        assert tokenizer.decode(ids[positions[-1] + 1 :]) == "\n"


def test_the_loss_falls_and_the_validation_loss_is_measured(tiny_models, synth_bench, tmp_path):
    out = tmp_path / "run"
    cfg = sft_config(
        out,
        tiny_models[ARCH],
        synth_bench,
        [
            "run.max_steps=12",
            "per_device_train_batch_size=3",
            "gradient_accumulation_steps=2",
            "validation={split: val, eval_steps: 6, metric: val_loss}",
        ],
    )
    train(cfg)
    records = read_jsonl(out / "metrics.jsonl")
    losses = [r["loss"] for r in records]
    assert losses[-1] < losses[0] - 1.0, losses
    vocabulary = len(load_tiny(tiny_models[ARCH])[1].tokenizer)
    assert abs(losses[0] - math.log(vocabulary)) < 0.5  # a token mean: near-uniform guesses at first
    val = [r["val_loss"] for r in records if "val_loss" in r]
    assert len(val) == 2 and val[1] < val[0]
    assert {"tokens", "grad_norm", "learning_rate", "time/decode", "time/update", "tokens_per_second"} <= set(
        records[-1]
    )
    best = json.loads((out / "best.json").read_text())
    assert (best["step"], best["metric"], best["score"]) == (12, "val_loss", val[1])
    assert [r["val_loss"] for r in read_jsonl(out / "validation.jsonl")] == val
    assert same_weights(out / "best", out / "final")


def test_the_output_starts_grpo_and_evaluation(tiny_models, synth_bench, tmp_path):
    sft_out = tmp_path / "sft"
    lora = ["model.lora.enabled=true", "model.lora.r=4", "optim.learning_rate=1e-2"]
    final = train(sft_config(sft_out, tiny_models[ARCH], synth_bench, ["target=cot", *lora]))
    assert changed(tiny_models[ARCH], final)  # the adapter is merged into the exported weights

    model, processor = load_model(ModelConfig(name_or_path=str(final), device="cpu"))
    examples = DataConfig(bench=str(synth_bench), tasks=["tag"], max_per_task=1).load()
    decoder = CachedDecoder(VideoSpec(**train_helpers.TINY_VIDEO), None)
    video = decoder.get(DataConfig(bench=str(synth_bench)).roots().resolve(examples[0]))
    inputs = build_inputs(processor, [build_messages(examples[0], "think")], [video])
    assert (
        len(generate(model, processor, inputs, SamplingConfig(max_new_tokens=4, do_sample=False)).texts) == 1
    )

    # The VideoSpec travels with the model: evaluation feeds it frames exactly as training did.
    trained_spec = VideoSpec(**train_helpers.TINY_VIDEO)
    assert load_eval_config(flags={"model.name_or_path": str(final)}).video == trained_spec
    assert load_eval_config(
        flags={"model.name_or_path": str(final)}, overrides=["video.max_frames=8"]
    ).video == (replace(trained_spec, max_frames=8))
    assert read_model_spec(sft_out / "checkpoint-2" / "hf") == asdict(trained_spec)

    grpo_final = grpo_trainer.train(grpo_config(tmp_path / "grpo", final, synth_bench, ["run.max_steps=1"]))
    assert (grpo_final / "model.safetensors").is_file()
    assert read_model_spec(grpo_final) == asdict(trained_spec)
    assert read_jsonl(tmp_path / "grpo" / "metrics.jsonl")[0]["step"] == 1


@pytest.fixture
def trained_examples(monkeypatch) -> list:
    """Every example the SFT trainer collates into a batch, in order."""
    seen = []
    real_collate = sft_trainer.collate

    def spy(processor, examples, videos, cfg):
        seen.extend(examples)
        return real_collate(processor, examples, videos, cfg)

    monkeypatch.setattr(sft_trainer, "collate", spy)
    return seen


def test_shuffled_options_move_the_answer_with_them_and_change_every_epoch(
    tiny_models, synth_bench, tmp_path, trained_examples
):
    seen = trained_examples
    two_epochs = [
        "data.tasks=[qa]",
        "per_device_train_batch_size=4",
        "run.max_steps=4",
        "shuffle_options=true",
    ]
    train(sft_config(tmp_path / "run", tiny_models[ARCH], synth_bench, two_epochs))

    original = {e.id: e for e in DataConfig(bench=str(synth_bench), tasks=["qa"]).load()}
    assert len(seen) == 2 * len(original) == 16
    for example in seen:
        source = original[example.id]
        assert sorted(example.options) == sorted(source.options)
        assert example.options["ABCD".index(example.answer)] == source.options["ABCD".index(source.answer)]
    first, second = {e.id: e.options for e in seen[:8]}, {e.id: e.options for e in seen[8:]}
    assert sum(first[i] != second[i] for i in original) >= 4
    assert sum(first[i] != original[i].options for i in original) >= 4
    assert len({e.answer for e in seen}) == 4


def test_task_repeats_draw_a_task_more_often_in_new_option_orders(
    tiny_models, synth_bench, tmp_path, trained_examples
):

    seen = trained_examples
    one_epoch = [
        "data.tasks=[qa, cls]",
        "task_repeats={qa: 2}",
        "per_device_train_batch_size=4",
        "run.max_steps=6",
        "shuffle_options=true",
    ]
    train(sft_config(tmp_path / "run", tiny_models[ARCH], synth_bench, one_epoch))

    qa = [e for e in seen if e.task == "qa"]
    assert len(qa) == 16 and sum(e.task == "cls" for e in seen) == 8 and len(seen) == 24
    orders: dict[str, list] = {}
    for example in qa:
        orders.setdefault(example.id, []).append(example.options)
    assert len(orders) == 8 and all(len(drawn) == 2 for drawn in orders.values())
    assert sum(first != second for first, second in orders.values()) >= 4


def test_a_killed_run_resumes_to_the_same_weights(tiny_models, synth_bench, tmp_path):
    overrides = ["run.max_steps=4", "run.save_steps=2", "model.lora.enabled=true", "model.lora.dropout=0.3"]
    overrides += ["optim.lr_scheduler=cosine", "optim.learning_rate=1e-2", "shuffle_options=true"]
    whole = train(sft_config(tmp_path / "whole", tiny_models[ARCH], synth_bench, overrides))

    with killed_after(3):
        train(sft_config(tmp_path / "killed", tiny_models[ARCH], synth_bench, overrides))
    resumed = train(sft_config(tmp_path / "killed", tiny_models[ARCH], synth_bench, overrides))
    assert same_weights(whole, resumed)
    assert [r["step"] for r in read_jsonl(tmp_path / "killed" / "metrics.jsonl")] == [1, 2, 3, 4]
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        train(
            sft_config(tmp_path / "killed", tiny_models[ARCH], synth_bench, [*overrides, "run.resume=never"])
        )


def test_early_stopping_stops_and_keeps_the_best_model(tiny_models, synth_bench, tmp_path, monkeypatch):
    scripted = iter([3.0, 2.0, 2.5, 2.7, 1.0])
    monkeypatch.setattr(sft_trainer, "validation_loss", lambda *args: next(scripted))
    out = tmp_path / "run"
    overrides = ["run.max_steps=8", "run.save_steps=1", "run.save_total_limit=null"]
    overrides += ["validation={split: val, eval_steps: 1, metric: val_loss, patience: 2}"]
    cfg = sft_config(out, tiny_models[ARCH], synth_bench, overrides)
    train(cfg)

    records = read_jsonl(out / "metrics.jsonl")
    assert [r["val_loss"] for r in records] == [
        3.0,
        2.0,
        2.5,
        2.7,
    ]  # stopped after 2 evaluations without gain
    best = json.loads((out / "best.json").read_text())
    assert (best["step"], best["score"]) == (2, 2.0)
    assert same_weights(out / "best", out / "checkpoint-2" / "hf")
    assert same_weights(out / "final", out / "checkpoint-4" / "hf")
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert "no better val_loss in 2 validations (best val_loss 2.0 at step 2)" in state["extra"]["stopped"]

    train(cfg)  # resume=auto: a stopped run stays stopped
    assert len(read_jsonl(out / "metrics.jsonl")) == 4


def test_config_errors_name_the_option(tiny_models, synth_bench, tmp_path):
    for overrides, message in [
        (["target=cot", "mode=direct"], "cot targets are trained on think prompts"),
        (["validation.split=val"], "validation.eval_steps: give a number of steps"),
        (["validation={split: val, eval_steps: 2, patience: 0}"], "validation.patience must be at least 1"),
        (["validation.metric=qa.accuracy"], None),  # off while validation.split is unset
        (["target=free"], "target"),
        (["data.tasks=[qa]", "task_repeats={cls: 2}"], "task_repeats: 'cls' is not one of data.tasks"),
        (["task_repeats={qa: 0}"], "task_repeats.qa must be a whole number"),
    ]:
        if message is None:
            sft_config(tmp_path, tiny_models[ARCH], synth_bench, overrides)
            continue
        with pytest.raises(ConfigError, match=message):
            sft_config(tmp_path, tiny_models[ARCH], synth_bench, overrides)
    assert SFTTrainConfig().optim.learning_rate == 2e-5  # the official SFT scripts' rate
