"""DDP, DeepSpeed ZeRO-2, ZeRO-3 and FSDP2 under accelerate, 2 processes on this CPU: the same update as one
process with the same global batch, for GRPO (tiny Qwen2.5-VL, video, a frozen reference) and SFT, and a
resume from the engine's own checkpoint. FSDP2 is switched on by a test helper (accelerate never picks it
on a CPU; see engine_helpers), so the vision tower called on its own is a CPU regression test."""

from __future__ import annotations

import json
import re
import shutil

import pytest

import model_fixtures
import train_helpers
import vaur1.rewards as rewards_module
from engine_helpers import launch, launch_machines
from train_helpers import TOY, changed, grpo_config, read_jsonl, safetensors_weights, same_weights, sft_config
from vaur1.config import save_config
from vaur1.data import DataConfig

pytestmark = pytest.mark.engines


ARCH = "qwen2_5_vl"
ENGINE = {
    "ddp-cpu": "ddp",
    "zero2": "deepspeed",
    "zero3": "deepspeed",
    "zero3_offload": "deepspeed",
    "fsdp": "fsdp",
}  # as the run log names them
COMMON = ["run.max_steps=2", "run.save_steps=1", "optim.learning_rate=1e-2", "optim.eps=1e-3"]
GRPO = [
    *TOY,
    "num_generations=4",
    "seed_rollouts_per_prompt=true",
    "loss.beta=0.04",  # a frozen reference model, partitioned by the engine too
    "loss.loss_type=dapo",
    "loss.scale_rewards=batch",
]


@pytest.fixture(scope="module")
def configs(tmp_path_factory, tiny_models, synth_bench):
    folder = tmp_path_factory.mktemp("engine-configs")
    model = tiny_models[ARCH]
    with pytest.MonkeyPatch.context() as patch:  # the toy reward, for this process only while writing
        patch.setitem(rewards_module.REWARDS, "toy", train_helpers.toy_reward)
        patch.setitem(rewards_module.REWARD_TASKS, "toy", ("qa", "tag", "cls"))
        save_config(
            grpo_config(folder / "unused", model, synth_bench, [*GRPO, *COMMON]), folder / "grpo.yaml"
        )
    save_config(sft_config(folder / "unused", model, synth_bench, COMMON), folder / "sft.yaml")
    return {"grpo": folder / "grpo.yaml", "sft": folder / "sft.yaml"}


@pytest.fixture(scope="module")
def one_process(configs, tmp_path_factory):
    """Each job's run in one plain process with the whole global batch (2 prompts per micro-batch)."""
    folder = tmp_path_factory.mktemp("one-process")
    for job, config in configs.items():
        launch(folder / job, job, config, None, 1, "per_device_train_batch_size=2")
    return folder


def console(result) -> str:
    """What the run printed, with rich's line wrapping undone."""
    return re.sub(r"\s+", " ", result.stderr + result.stdout)


def assert_same_weights(run, reference):
    ours, theirs = safetensors_weights(run / "final"), safetensors_weights(reference / "final")
    assert ours.keys() == theirs.keys()  # the export writes the checkpoint's own key names
    for key, tensor in theirs.items():
        assert ours[key].allclose(tensor, rtol=1e-4, atol=1e-6), key


@pytest.mark.slow
@pytest.mark.parametrize("job", ["grpo", "sft"])
@pytest.mark.parametrize("engine", ["ddp-cpu", "zero2", "zero3", "fsdp"])
def test_deepspeed_on_two_processes_updates_like_one_process_and_resumes(
    engine, job, configs, one_process, tmp_path
):
    out = tmp_path / "run"
    result = launch(out, job, configs[job], engine, 2, "per_device_train_batch_size=1")
    assert f"{ENGINE[engine]} on 2 process" in console(result)
    assert_same_weights(out, one_process / job)
    records = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2]
    assert records[-1]["loss"] == pytest.approx(
        read_jsonl(one_process / job / "metrics.jsonl")[-1]["loss"], rel=1e-3
    )

    # a kill after step 1: the engine's own checkpoint-1 continues to the same weights
    shutil.rmtree(out / "checkpoint-2")
    shutil.rmtree(out / "final")
    result = launch(out, job, configs[job], engine, 2, "per_device_train_batch_size=1")
    assert "resumed from" in console(result)
    assert_same_weights(out, one_process / job)


@pytest.mark.slow
@pytest.mark.slow
def test_zero3_with_offload_to_cpu_updates_like_one_process(configs, one_process, tmp_path):
    """VAU-R1's own setting: parameters and optimizer states in CPU memory, DeepSpeed's CPU Adam."""
    out = tmp_path / "run"
    result = launch(out, "grpo", configs["grpo"], "zero3_offload", 2, "per_device_train_batch_size=1")
    assert "deepspeed on 2 process" in console(result)
    assert_same_weights(out, one_process / "grpo")


@pytest.mark.parametrize("engine", ["ddp-cpu", "zero3", "fsdp"])
def test_one_row_per_completion_reaches_the_weights_of_the_shared_prefix(
    engine, configs, one_process, tmp_path
):
    """The one-process run shares each prompt among its G completions (the default); 2 processes
    scoring one row per completion reach the same weights, so the two layouts give the same
    gradients under each engine."""
    out = tmp_path / "run"
    launch(out, "grpo", configs["grpo"], engine, 2, "per_device_train_batch_size=1", "shared_prefix=false")
    assert_same_weights(out, one_process / "grpo")


@pytest.mark.slow
def test_a_nan_loss_under_zero3_skips_the_update_and_counts_it(configs, tiny_models, tmp_path):
    out = tmp_path / "run"
    launch(
        out, "grpo", configs["grpo"], "zero3", 2, "per_device_train_batch_size=1", env={"NAN_AT_CALLS": "2"}
    )
    guard = [
        json.loads((out / f"checkpoint-{step}" / "trainer_state.json").read_text())["guard"]
        for step in (1, 2)
    ]
    assert [g["total"] for g in guard] == [0, 1]
    assert changed(tiny_models[ARCH], out / "checkpoint-1" / "hf")
    assert same_weights(out / "checkpoint-1" / "hf", out / "final")  # the NaN step changed nothing


@pytest.mark.slow
def test_validation_with_an_odd_number_of_examples_runs_in_lockstep_under_zero3(
    configs, tmp_path, synth_bench
):
    examples = sum(1 for _ in (synth_bench / "val.csv").open()) - 1
    assert examples * 3 % 2 == 1  # qa, tag and cls of each clip: an odd count for 2 processes
    out = tmp_path / "run"
    launch(
        out,
        "sft",
        configs["sft"],
        "zero3",
        2,
        "per_device_train_batch_size=1",
        "validation.split=val",
        "validation.eval_steps=2",
        "validation.metric=val_loss",  # the val clip is normal: no TAG positives for mean_accuracy
    )
    (record,) = read_jsonl(out / "validation.jsonl")
    assert record["step"] == 2 and record["values"]["val_loss"] > 0
    assert (out / "best" / "model.safetensors").is_file()


@pytest.mark.parametrize("arch", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_fsdp_shards_each_architectures_layers_blocks_and_vision_tower(tiny_models, arch):
    from vaur1.train.distributed import fsdp_units

    model, _ = model_fixtures.load_tiny(tiny_models[arch])
    units = fsdp_units(model)
    classes = {type(module).__name__ for module in model.modules()}
    assert set(units) <= classes
    assert any(name.endswith("DecoderLayer") for name in units)
    assert any(name.endswith("VisionBlock") for name in units)
    assert type(model.model.visual).__name__ in units


@pytest.mark.slow
def test_two_machines_form_one_job_and_only_rank_0_writes_the_shared_files(
    tiny_models, synth_bench, tmp_path, toy
):
    examples = DataConfig(bench=str(synth_bench), tasks=["cls"], max_per_task=4).load()
    broken = train_helpers.videos_with_one_broken(synth_bench, tmp_path / "videos", examples)
    overrides = [
        *GRPO,
        *COMMON,
        "data.tasks=[cls]",
        "data.max_per_task=4",
        f"data.video_roots.default={broken}",
    ]
    config = tmp_path / "grpo.yaml"
    save_config(grpo_config(tmp_path / "unused", tiny_models[ARCH], synth_bench, overrides), config)

    launch(tmp_path / "one", "grpo", config, None, 1, "per_device_train_batch_size=2")
    launch_machines(tmp_path / "two", "grpo", config, 2, "per_device_train_batch_size=1")
    assert_same_weights(tmp_path / "two", tmp_path / "one")
    # one writer: each record once, the skipped clip once, whichever machine met it
    assert [r["step"] for r in read_jsonl(tmp_path / "two" / "metrics.jsonl")] == [1, 2]
    assert [s["key"] for s in read_jsonl(tmp_path / "two" / "skipped.jsonl")] == [examples[1].key]


@pytest.mark.slow
def test_a_sequence_level_loss_on_two_processes_updates_like_one_process(configs, tmp_path):
    """GSPO's sequence ratio, with two updates per rollout so that it departs from 1, under DDP and
    ZeRO-3 with 2 processes, reaches one process's weights."""
    gspo = ["loss.loss_type=grpo", "loss.importance_sampling_level=sequence", "loss.num_iterations=2"]
    reference = tmp_path / "one"
    launch(reference, "grpo", configs["grpo"], None, 1, "per_device_train_batch_size=2", *gspo)
    for engine in ("ddp-cpu", "zero3"):
        out = tmp_path / engine
        result = launch(out, "grpo", configs["grpo"], engine, 2, "per_device_train_batch_size=1", *gspo)
        assert f"{ENGINE[engine]} on 2 process" in console(result)
        assert_same_weights(out, reference)
        ours, theirs = read_jsonl(out / "metrics.jsonl"), read_jsonl(reference / "metrics.jsonl")
        assert [r["clip_ratio/region_mean"] for r in ours] == pytest.approx(
            [r["clip_ratio/region_mean"] for r in theirs], abs=1e-6
        )


@pytest.mark.slow
def test_dynamic_sampling_on_two_processes_updates_like_one_process(configs, tmp_path):
    """DAPO's dynamic sampling with a sparse reward (it refills), under DDP and ZeRO-3 with 2 processes:
    the processes stay in lockstep and reach one process's weights and the same rounds."""
    sparse = [
        "rewards.qa={accuracy: 1.0}",
        "rewards.tag={accuracy: 1.0}",
        "rewards.cls={class: 1.0}",
        "rollout.dynamic_sampling=true",
        "rollout.max_rounds=3",
    ]
    reference = tmp_path / "one"
    launch(reference, "grpo", configs["grpo"], None, 1, "per_device_train_batch_size=2", *sparse)
    theirs = read_jsonl(reference / "metrics.jsonl")
    assert any(r["dynamic/rounds"] > 1 for r in theirs)
    for engine in ("ddp-cpu", "zero3"):
        out = tmp_path / engine
        launch(out, "grpo", configs["grpo"], engine, 2, "per_device_train_batch_size=1", *sparse)
        assert_same_weights(out, reference)
        ours = read_jsonl(out / "metrics.jsonl")
        for key in ("dynamic/rounds", "dynamic/prompts_drawn", "dynamic/groups_kept"):
            assert [r[key] for r in ours] == [r[key] for r in theirs], (engine, key)


@pytest.mark.parametrize("engine", ["zero3", "fsdp"])
def test_a_mixed_reference_is_refused_where_the_reference_is_sharded(configs, tmp_path, engine):
    result = launch(
        tmp_path / "run", "grpo", configs["grpo"], engine, 2, "loss.sync_ref_model=true", check=False
    )
    assert result.returncode == 1, result.stderr[-3000:]  # the launcher's code for a failed process
    # each process's one line; the launcher adds its own report, but no vaur1 frame is shown
    assert "error: loss.sync_ref_model: the reference is mixed with one process, DDP or ZeRO-2" in console(
        result
    )
    assert not re.search(r'File "[^"]*/vaur1/[^"]*\.py"', result.stderr)
