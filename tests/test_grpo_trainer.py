"""The GRPO trainer on a tiny Qwen2.5-VL and SynthVAU clips: video gradients, per-task scoring,
learning a toy reward, kill-and-resume, bad input, the reference model, LoRA and full fine-tuning."""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import model_fixtures
import train_helpers
from model_fixtures import load_tiny, make_video
from train_helpers import (
    SHORT_PROMPTS,
    TINY_VIDEO,
    TOY,
    changed,
    grpo_config,
    killed_after,
    read_jsonl,
    rollout_of,
    same_weights,
)
from vaur1.data import DataConfig
from vaur1.errors import ConfigError
from vaur1.model import ARCHS, SamplingConfig, generate, load_model, repeat_inputs, vision_tower
from vaur1.model.load import ModelConfig
from vaur1.prompts import PromptConfig
from vaur1.rewards import RewardConfig, score
from vaur1.rl import reference as reference_module
from vaur1.rl import trainer as trainer_module
from vaur1.rl.objectives import policy_loss
from vaur1.rl.rollout import prompt_inputs, rollout_seed
from vaur1.rl.trainer import completion_logps, train
from vaur1.train.common import TrainingAborted
from vaur1.video.cache import CachedDecoder
from vaur1.video.spec import VideoSpec

pytestmark = pytest.mark.usefixtures("one_thread")  # one intra-op thread: faster on a shared 2-core CPU

ARCH = "qwen2_5_vl"


def examples_and_videos(bench: Path, tasks: list[str], count: int):
    data = DataConfig(bench=str(bench), tasks=tasks, max_per_task=count)
    examples = data.load()
    decoder = CachedDecoder(VideoSpec(**TINY_VIDEO), None)
    return examples, [decoder.get(data.roots().resolve(example)) for example in examples]


def test_the_policy_loss_reaches_the_vision_tower_through_the_rollouts_own_video(tiny_models, synth_bench):
    model, processor = load_tiny(tiny_models[ARCH])
    examples, videos = examples_and_videos(synth_bench, ["tag"], 2)
    rollout = rollout_of(model, processor, examples, videos)
    prompts = prompt_inputs(processor, examples, videos, "think", PromptConfig(**SHORT_PROMPTS))
    # the log-prob pass reads exactly the tensors generation used: the same patches, each prompt's
    # grid and seconds per grid repeated for its G rows
    assert torch.equal(rollout.videos["pixel_values_videos"], prompts["pixel_values_videos"])
    assert torch.equal(rollout.videos["video_grid_thw"], prompts["video_grid_thw"])
    for key in ("video_grid_thw", "second_per_grid_ts"):
        assert torch.equal(rollout.inputs[key], prompts[key].repeat_interleave(3, dim=0))
    assert "pixel_values_videos" not in rollout.inputs  # encoded once per prompt, not once per row

    model.train()
    logps, _ = completion_logps(model, rollout, temperature=1.0)
    advantages = torch.tensor([1.0, -1.0, 0.5, -0.5, 1.0, -1.0])
    loss, _ = policy_loss(
        logps,
        None,
        None,
        advantages,
        rollout.loss_mask,
        loss_type="grpo",
        epsilon=0.2,
        epsilon_high=None,
        beta=0.0,
    )
    loss.backward()
    grads = [p.grad for p in vision_tower(model).parameters()]
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0

    # sharing one encoding among the G rows is the same computation as encoding the video per row
    with torch.no_grad():
        full = dict(rollout.inputs) | {
            "pixel_values_videos": repeat_inputs(prompts, 3)["pixel_values_videos"]
        }
        length = rollout.completion_ids.shape[1]
        logits = model(**full, logits_to_keep=length + 1, use_cache=False).logits[:, :-1]
        per_row = torch.log_softmax(logits, -1).gather(-1, rollout.completion_ids[..., None]).squeeze(-1)
        assert torch.allclose(per_row, logps, atol=1e-5)
        blank = replace(rollout, videos=dict(rollout.videos))
        blank.videos["pixel_values_videos"] = torch.zeros_like(rollout.videos["pixel_values_videos"])
        assert not torch.allclose(completion_logps(model, blank, 1.0)[0], logps, atol=1e-3)


@pytest.mark.parametrize("arch", ARCHS)
def test_one_video_encoding_per_prompt_equals_one_per_completion(tiny_models, synth_bench, arch):
    model, processor = load_tiny(tiny_models[arch])
    examples = DataConfig(bench=str(synth_bench), tasks=["cls"], max_per_task=2).load()
    videos = [make_video(processor, num_frames=2 * (i + 1), seed=i) for i in range(2)]  # two lengths
    rollout = rollout_of(model, processor, examples, videos, group=3)
    prompts = prompt_inputs(processor, examples, videos, "think", PromptConfig(**SHORT_PROMPTS))
    model.train()
    shared, _ = completion_logps(model, rollout, temperature=0.7)
    full = dict(rollout.inputs) | {"pixel_values_videos": repeat_inputs(prompts, 3)["pixel_values_videos"]}
    length = rollout.completion_ids.shape[1]
    logits = model(**full, logits_to_keep=length + 1, use_cache=False).logits[:, :-1] / 0.7
    per_row = torch.log_softmax(logits, -1).gather(-1, rollout.completion_ids[..., None]).squeeze(-1)
    assert torch.allclose(shared, per_row, atol=1e-5)
    (shared * rollout.completion_mask).sum().backward()
    shared_grads = [p.grad.clone() for p in vision_tower(model).parameters()]
    model.zero_grad()
    (per_row * rollout.completion_mask).sum().backward()
    for shared_grad, p in zip(shared_grads, vision_tower(model).parameters(), strict=True):
        assert torch.allclose(shared_grad, p.grad, atol=1e-5, rtol=1e-4)


def test_a_mixed_batch_scores_each_completion_by_its_own_task(tiny_models, synth_bench):
    model, processor = load_tiny(tiny_models[ARCH])
    examples, videos = examples_and_videos(synth_bench, ["qa", "tag", "cls"], 1)
    rollout = rollout_of(model, processor, examples, videos, group=2)
    assert rollout.tasks == ["qa", "qa", "tag", "tag", "cls", "cls"]
    config = RewardConfig()
    for row, task in enumerate(rollout.tasks):
        example = examples[row // 2]
        assert set(rollout.reward_parts[row]) == set(config.weights(task))
        assert rollout.rewards[row].item() == pytest.approx(score(rollout.texts[row], example, config)[0])
        assert rollout.keys[row] == example.key


def test_seeded_rollouts_do_not_depend_on_the_batch(tiny_models, synth_bench):
    model, processor = load_tiny(tiny_models[ARCH])
    examples, videos = examples_and_videos(synth_bench, ["qa"], 2)
    seeds = [rollout_seed(42, 3, slot) for slot in (0, 1)]
    together = rollout_of(model, processor, examples, videos, seeds=seeds, tokens=10)
    alone = rollout_of(model, processor, examples[1:], videos[1:], seeds=seeds[1:], tokens=10)
    assert together.texts[3:] == alone.texts
    assert together.texts[:3] != together.texts[3:]
    state = torch.random.get_rng_state()
    rollout_of(model, processor, examples, videos, seeds=seeds)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global stream is left alone
    assert rollout_seed(42, 3, 0) != rollout_seed(42, 4, 0) != rollout_seed(43, 3, 0)


ALGORITHMS = {
    "gspo": (["loss.loss_type=grpo", "loss.importance_sampling_level=sequence"], "clip_ratio/region_mean"),
    "luspo": (["loss.loss_type=luspo", "loss.importance_sampling_level=sequence"], "clip_ratio/high_max"),
    "cispo": (["loss.loss_type=cispo", "loss.epsilon_high=5.0"], "cispo_clip_ratio"),
    "sapo": (["loss.loss_type=sapo"], "entropy"),
    "gdpo": (["rewards.multi_objective_aggregation=normalize_then_sum"], "rewards/toy/mean"),
    "rloo": (["loss.advantage_estimator=rloo"], "frac_reward_zero_std"),
    "overlong shaping": (["rewards.overlong_buffer_len=4"], "rewards/overlong/mean"),
    "t-grpo": (
        [
            "rollout.temporal.enabled=true",
            "rewards.qa={toy: 1.0, accuracy: 1.0}",
            "rewards.tag={toy: 1.0, iou: 1.0}",
            "rewards.cls={toy: 1.0, class: 1.0}",
        ],
        "temporal/shuffled_accuracy",
    ),
    "vespo": (["loss.loss_type=vespo"], "vespo/phi_seq_mean"),
    "dapo with every mask": (
        [
            "loss.delta=1.5",
            "loss.off_policy_mask_threshold=0.1",
            "loss.top_entropy_quantile=0.5",
            "loss.entropy_coef=0.01",
            "loss.use_adaptive_entropy=true",
            "loss.beta=0.02",
        ],
        "entropy_coef",
    ),
}


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_each_grpo_family_objective_trains_end_to_end(algorithm, tiny_models, synth_bench, tmp_path, toy):
    overrides, logged = ALGORITHMS[algorithm]
    out = tmp_path / "run"
    cfg = grpo_config(
        out, tiny_models[ARCH], synth_bench, [*TOY, "run.max_steps=2", "loss.num_iterations=2", *overrides]
    )
    final = train(cfg)
    records = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2] and all(logged in r for r in records), algorithm
    assert changed(tiny_models[ARCH], final), algorithm  # the update moved the weights
    if algorithm == "dapo with every mask":
        state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
        assert state["extra"]["entropy_control"]["coef"] == records[-1]["entropy_coef"]


def test_a_registered_advantage_estimator_drives_the_update(
    tiny_models, synth_bench, tmp_path, toy, monkeypatch
):
    """An estimator registered outside vaur1 and named in the config turns the global batch's rewards
    into the advantages the update uses."""
    from vaur1.rl.loss import ADVANTAGE_ESTIMATORS, group_advantages

    seen = []

    def sign_advantages(inputs):
        seen.append(inputs)
        centred = group_advantages(inputs.rewards, inputs.group_size, "none")
        return centred._replace(advantages=torch.sign(centred.advantages))

    monkeypatch.setitem(ADVANTAGE_ESTIMATORS, "sign", sign_advantages)
    out = tmp_path / "run"
    final = train(
        grpo_config(
            out, tiny_models[ARCH], synth_bench, [*TOY, "run.max_steps=2", "loss.advantage_estimator=sign"]
        )
    )
    assert len(seen) == 2 and all(inputs.rewards.numel() == 2 * 4 for inputs in seen)  # 2 prompts, G = 4
    assert seen[0].parts.shape == (8, 1) and torch.equal(seen[0].parts[:, 0], seen[0].rewards)  # toy alone
    assert changed(tiny_models[ARCH], final)


def test_dynamic_sampling_draws_rounds_until_the_step_has_informative_groups(
    tiny_models, synth_bench, tmp_path
):
    """A sparse reward (QA accuracy alone: a random model's groups mostly score all 0) makes DAPO's
    dynamic sampling draw further rounds; what it keeps never exceeds the step's prompts."""
    out = tmp_path / "run"
    overrides = [
        "data.tasks=[qa]",
        "rewards.qa={accuracy: 1.0}",
        "mode=direct",
        "rollout.dynamic_sampling=true",
        "rollout.max_rounds=3",
        "run.max_steps=2",
        "num_generations=4",
        "max_completion_length=4",
    ]
    train(grpo_config(out, tiny_models[ARCH], synth_bench, overrides))
    records = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2]
    for record in records:
        assert 1 <= record["dynamic/rounds"] <= 3
        assert record["dynamic/prompts_drawn"] == 2 * record["dynamic/rounds"]  # a global batch a round
        assert 0 <= record["dynamic/groups_kept"] <= 2
        assert (record["dynamic/rounds"] == 3) or record["dynamic/groups_kept"] == 2
    assert any(r["dynamic/rounds"] > 1 for r in records)  # the sparse reward made it refill
    order = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())["data"]
    drawn = sum(r["dynamic/prompts_drawn"] for r in records)
    assert order["epoch"] * order["num_samples"] + order["position"] == drawn  # taken from the data order


@pytest.mark.slow
def test_the_mean_reward_rises_on_a_toy_task(tiny_models, synth_bench, tmp_path, toy):
    out = tmp_path / "run"
    cfg = grpo_config(
        out,
        tiny_models[ARCH],
        synth_bench,
        [
            *TOY,
            "run.max_steps=30",
            "num_generations=8",
            "optim.learning_rate=3e-3",
            "run.report_to=[tensorboard]",
            "loss.beta=0.01",
        ],
    )
    final = train(cfg)
    records = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, 31))
    rewards = [r["reward"] for r in records]
    assert sum(rewards[-5:]) / 5 > 3 * max(sum(rewards[:5]) / 5, 0.01), rewards
    last = records[-1]
    for key in (
        "reward_std",
        "rewards/toy/mean",
        "rewards/toy/std",
        "frac_reward_zero_std",
        "completions/mean_length",
        "completions/clipped_ratio",
        "clip_ratio/region_mean",
        "entropy",
        "learning_rate",
        "grad_norm",
        "time/decode",
        "time/rollout",
        "time/scoring",
        "time/reference",
        "time/update",
        "time/step",
        "tokens_per_second",
        "rollout_tokens_per_second",
    ):
        assert key in last, key
    assert last["learning_rate"] == pytest.approx(3e-3)
    per_task = {key for record in records for key in record if key.startswith("reward/")}
    assert per_task == {"reward/qa", "reward/tag", "reward/cls"}  # a mixed-task run, scored per task
    assert (out / "tensorboard").is_dir()
    samples = read_jsonl(out / "samples.jsonl")
    assert samples and {"key", "task", "prompt", "completion", "reward", "rewards"} <= set(samples[0])
    assert changed(tiny_models[ARCH], final, prefix="visual.")  # full fine-tuning moved the tower


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_weights_of_an_uninterrupted_one(tiny_models, synth_bench, tmp_path, toy):
    overrides = [
        *TOY,
        "run.max_steps=4",
        "run.save_steps=2",
        "run.save_total_limit=1",
        "model.lora.enabled=true",
        "model.lora.target_modules=[q_proj, v_proj]",
        "model.lora.r=4",
        "model.lora.dropout=0.3",
        "loss.beta=0.1",
        "loss.num_iterations=2",
        "num_generations=8",
        "optim.learning_rate=1e-2",
    ]
    whole = train(grpo_config(tmp_path / "whole", tiny_models[ARCH], synth_bench, overrides))
    assert [p.name for p in (tmp_path / "whole").glob("checkpoint-*")] == ["checkpoint-4"]

    with killed_after(3):
        train(grpo_config(tmp_path / "killed", tiny_models[ARCH], synth_bench, overrides))
    assert [p.name for p in (tmp_path / "killed").glob("checkpoint-*")] == ["checkpoint-2"]
    resumed = train(grpo_config(tmp_path / "killed", tiny_models[ARCH], synth_bench, overrides))

    assert changed(tiny_models[ARCH], whole)  # the adapter trained and was merged into the export
    assert same_weights(whole, resumed)
    assert [r["step"] for r in read_jsonl(tmp_path / "killed" / "metrics.jsonl")] == [1, 2, 3, 4]


def test_a_corrupt_video_is_skipped_and_recorded_never_replaced(tiny_models, synth_bench, tmp_path):
    examples = DataConfig(bench=str(synth_bench), tasks=["cls"], max_per_task=4).load()
    broken = train_helpers.videos_with_one_broken(synth_bench, tmp_path / "broken", examples)

    out = tmp_path / "run"
    cfg = grpo_config(
        out,
        tiny_models[ARCH],
        synth_bench,
        [
            "data.tasks=[cls]",
            "data.max_per_task=4",
            f"data.video_roots.default={broken}",
            "per_device_train_batch_size=1",
            "gradient_accumulation_steps=2",
            "run.max_steps=2",
        ],
    )
    train(cfg)
    skipped = read_jsonl(out / "skipped.jsonl")
    assert [s["key"] for s in skipped] == [examples[1].key]
    assert str(broken / examples[1].video) == skipped[0]["video"] and skipped[0]["reason"]
    records = read_jsonl(out / "metrics.jsonl")
    assert [r["skipped_samples"] for r in records][-1] == 1
    # the step with the broken clip trained on 1 prompt (its empty micro-batch ran on the filler)
    assert sorted(r["prompts"] for r in records) == [1, 2]


def test_a_nan_loss_skips_the_step_and_too_many_abort(
    tiny_models, synth_bench, tmp_path, toy, monkeypatch, caplog
):
    real_loss = trainer_module.policy_loss
    calls = {"n": 0}

    def sometimes_nan(*args, **kwargs):
        loss, stats = real_loss(*args, **kwargs)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] in (1, 3, 4) else loss), stats

    monkeypatch.setattr(trainer_module, "policy_loss", sometimes_nan)
    out = tmp_path / "run"
    cfg = grpo_config(
        out,
        tiny_models[ARCH],
        synth_bench,
        [*TOY, "run.max_steps=6", "run.save_steps=1", "run.max_bad_steps=2", "num_generations=8"],
    )
    with (
        caplog.at_level(logging.WARNING, logger="vaur1"),
        pytest.raises(TrainingAborted, match="2 steps in a row"),
    ):
        train(cfg)
    assert any("step 1: non-finite loss, skipping the update" in r.getMessage() for r in caplog.records)
    guard_totals = [
        json.loads((out / f"checkpoint-{step}" / "trainer_state.json").read_text())["guard"]["total"]
        for step in (1, 2, 3)
    ]
    assert guard_totals == [1, 1, 2]
    assert not (out / "checkpoint-4").exists() and not (out / "final").exists()
    assert same_weights(tiny_models[ARCH], out / "checkpoint-1" / "hf")  # the NaN step changed nothing
    assert changed(out / "checkpoint-1" / "hf", out / "checkpoint-2" / "hf")


MIXED_REFERENCE = [
    *TOY,
    "loss.beta=0.1",
    "loss.sync_ref_model=true",
    "loss.ref_model_mixup_alpha=0.5",
    "loss.ref_model_sync_steps=2",
    "optim.learning_rate=1e-2",
]


def test_a_mixed_reference_model_moves_as_trls_sync_callback_moves_it(
    tiny_models, synth_bench, tmp_path, toy, monkeypatch
):
    """sync_ref_model: at every ref_model_sync_steps-th step the reference becomes what TRL's
    SyncRefModelCallback makes of it, and not at the steps between."""
    from trl.trainer.callbacks import SyncRefModelCallback

    real_sync = reference_module.Reference.sync_if_due
    synced = []

    def sync_against_trl(self, step):
        policy = self.session.accelerator.unwrap_model(self.session.model)
        expected = {name: p.detach().clone() for name, p in self.model.named_parameters()}
        mixed = copy.deepcopy(self.model)
        real_sync(self, step)
        if step % 2:
            assert all(torch.equal(p, expected[name]) for name, p in self.model.named_parameters()), step
            return
        SyncRefModelCallback._sync_target_model(policy, mixed, 0.5)
        trl_mixed = dict(mixed.named_parameters())
        assert all(torch.equal(p, trl_mixed[name]) for name, p in self.model.named_parameters())
        assert any(not torch.equal(p, expected[name]) for name, p in self.model.named_parameters())
        synced.append(step)

    monkeypatch.setattr(reference_module.Reference, "sync_if_due", sync_against_trl)
    out = tmp_path / "run"
    train(grpo_config(out, tiny_models[ARCH], synth_bench, [*MIXED_REFERENCE, "run.max_steps=4"]))
    assert synced == [2, 4]
    assert (out / "checkpoint-4" / "state" / "reference_model.safetensors").is_file()  # saved with the run


@pytest.mark.slow
def test_a_resumed_run_continues_with_its_mixed_reference(tiny_models, synth_bench, tmp_path, toy):
    """The reference weights are part of the checkpoint: resuming from step 2 (after a sync) ends
    where the uninterrupted run ends, which reloading the starting weights as reference would not."""
    overrides = [*MIXED_REFERENCE, "run.max_steps=4", "run.save_steps=2", "num_generations=8"]
    whole = train(grpo_config(tmp_path / "whole", tiny_models[ARCH], synth_bench, overrides))
    with killed_after(3):
        train(grpo_config(tmp_path / "killed", tiny_models[ARCH], synth_bench, overrides))
    resumed = train(grpo_config(tmp_path / "killed", tiny_models[ARCH], synth_bench, overrides))
    assert same_weights(whole, resumed)


@pytest.mark.parametrize(
    ("lora", "beta", "freeze_vision", "references_loaded"),
    [(False, 0.0, False, 0), (False, 0.04, True, 1), (True, 0.04, False, 0)],
    ids=["full-beta0", "full-kl-frozen-vision", "lora-kl"],
)
def test_reference_lora_full_finetuning_and_loadable_checkpoints(
    tiny_models, synth_bench, tmp_path, toy, monkeypatch, lora, beta, freeze_vision, references_loaded
):
    loads = []
    real_load = reference_module.load_model
    monkeypatch.setattr(reference_module, "load_model", lambda cfg: loads.append(cfg) or real_load(cfg))
    out = tmp_path / "run"
    overrides = [*TOY, f"loss.beta={beta}", f"model.lora.enabled={str(lora).lower()}", "run.save_steps=1"]
    overrides += ["optim.learning_rate=1e-2", f"model.freeze_vision={str(freeze_vision).lower()}"]
    final = train(grpo_config(out, tiny_models[ARCH], synth_bench, overrides))

    assert len(loads) == references_loaded
    records = read_jsonl(out / "metrics.jsonl")
    assert ("kl" in records[-1]) == (beta > 0)
    if beta > 0:
        assert records[0]["kl"] == pytest.approx(0.0, abs=1e-6) and records[-1]["kl"] > 0
    text_changed = changed(tiny_models[ARCH], final, prefix="model.layers.")
    assert text_changed and (not lora or all("proj" in name for name in text_changed))
    assert bool(changed(tiny_models[ARCH], final, prefix="visual.")) == (not lora and not freeze_vision)
    for model_dir in (out / "checkpoint-1" / "hf", out / "checkpoint-2" / "hf", final):
        model, processor = load_model(ModelConfig(name_or_path=str(model_dir), device="cpu"))
        examples, videos = examples_and_videos(synth_bench, ["cls"], 1)
        inputs = prompt_inputs(processor, examples, videos, "direct", PromptConfig(**SHORT_PROMPTS))
        out_texts = generate(
            model, processor, inputs, SamplingConfig(max_new_tokens=4, do_sample=False)
        ).texts
        assert len(out_texts) == 1
    assert same_weights(out / "checkpoint-2" / "hf", final)


def test_rollouts_keep_the_kv_cache_under_gradient_checkpointing(
    tiny_models, synth_bench, tmp_path, monkeypatch
):

    from vaur1.model import generators as generators_module

    real_generate = generators_module.generate
    seen = []

    def spy(model, processor, inputs, sampling):
        base = model.get_base_model()
        cached = []
        hook = base.model.language_model.layers[0].self_attn.register_forward_pre_hook(
            lambda module, args, kwargs: cached.append(kwargs.get("past_key_values") is not None),
            with_kwargs=True,
        )
        try:
            out = real_generate(model, processor, inputs, sampling)
        finally:
            hook.remove()
        seen.append((model_fixtures.checkpointing_on(base), model.training, cached))
        return out

    monkeypatch.setattr(generators_module, "generate", spy)
    overrides = [
        "gradient_checkpointing=true",
        "model.lora.enabled=true",
        "run.max_steps=1",
        "loss.beta=0.04",
    ]
    train(grpo_config(tmp_path / "run", tiny_models[ARCH], synth_bench, overrides))
    assert seen
    for checkpointing, training, cached in seen:
        assert checkpointing and training  # the policy trains with checkpointing on ...
        assert len(cached) > 1 and all(cached)  # ... and every decoding step still read the KV cache


def test_config_errors_name_the_option(tiny_models, synth_bench, tmp_path):
    model, bench = tiny_models[ARCH], synth_bench
    for overrides, message in [
        (["data.tasks=[reasoning]"], "reasoning has no GRPO rewards"),
        (["num_generations=1"], "num_generations must be at least 2"),
        (["sampling.num_return_sequences=3"], "set num_generations instead"),
        (["sampling.max_new_tokens=99"], "set max_completion_length instead"),
        (["mode=direct"], r"rewards.qa.format: direct prompts are scored by format_direct"),
        (["model.gradient_checkpointing=true"], "top level"),
        (["model.device=cpu"], "accelerate places the model"),
        (["loss.loss_type=ppo"], "loss_type"),
        (["loss.sync_ref_model=true"], "sync_ref_model needs loss.beta > 0"),
        (["loss.sync_ref_model=true", "loss.beta=0.1", "model.lora.enabled=true"], "needs full fine-tuning"),
        (["loss.ref_model_mixup_alpha=0"], r"ref_model_mixup_alpha must be in \(0, 1\]"),
        (["loss.advantage_estimator=ppo"], "loss.advantage_estimator: 'ppo' is not one of grpo, gdpo, rloo"),
        (
            ["loss.advantage_estimator=rloo", "rewards.multi_objective_aggregation=normalize_then_sum"],
            "is the gdpo advantage estimator",
        ),
    ]:
        with pytest.raises(ConfigError, match=message):
            grpo_config(tmp_path, model, bench, overrides)
    with pytest.raises(ConfigError, match=r"video.factor 32 does not fit the model.*set video.factor=28"):
        train(grpo_config(tmp_path, model, bench, ["video.factor=32"]))
