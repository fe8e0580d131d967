"""`vaur1 plan`, the shipped real architectures and `vaur1 model tiny --like`.

The architectures are built on the meta device (no memory, no network); the plan is checked against
the peak memory of real CPU runs of a tiny model, its visual tokens against the processor's on a
real video, its frame-cache size against the cache `vaur1 video cache` fills.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from conftest import VAUR1, run_cli
from train_helpers import read_jsonl
from vaur1.bench.synth import generate_synthvau
from vaur1.model import build_inputs, load_model
from vaur1.model.load import ModelConfig
from vaur1.model.shipped import ARCHITECTURES, architecture_config, meta_model, narrowed_config, shipped_name
from vaur1.model.tiny import build_tiny_model, build_tokenizer
from vaur1.plan.memory import Shapes, Workload, estimate, phases
from vaur1.video.decode import decode
from vaur1.video.spec import VideoSpec

# Sizes on the checkpoints' Hub pages (billions of parameters, rounded as published)
PUBLISHED = {
    "qwen2_vl_2b": 2.21,
    "qwen2_vl_7b": 8.29,
    "qwen2_5_vl_3b": 3.75,
    "qwen2_5_vl_7b": 8.29,
    "qwen3_vl_2b": 2.13,
    "qwen3_vl_4b": 4.44,
    "qwen3_vl_8b": 8.77,
}


def plan_json(*args: str) -> dict:
    result = run_cli("plan", *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_shipped_architectures_have_the_published_sizes(name: str) -> None:
    config, source = architecture_config(ARCHITECTURES[name])  # a Hub id: the shipped copy, no download
    assert source.startswith(f"shipped {name}")
    model = meta_model(config)
    total = sum(p.numel() for p in model.parameters())
    assert round(total / 1e9, 2) == PUBLISHED[name]
    if name == "qwen2_5_vl_3b":
        assert round(sum(p.numel() for p in model.model.visual.parameters()) / 1e9, 2) == 0.67


def test_shipped_names_cover_base_and_instruct_ids() -> None:
    assert shipped_name("Qwen/Qwen2.5-VL-3B-Instruct") == "qwen2_5_vl_3b"
    assert shipped_name("Qwen/Qwen2.5-VL-3B") == "qwen2_5_vl_3b"
    assert shipped_name("qwen3_vl_8b") == "qwen3_vl_8b"
    assert shipped_name("Qwen/Qwen2.5-VL-32B-Instruct") is None


def test_narrowed_configs_keep_widths_and_move_vision_layouts() -> None:
    tokenizer = build_tokenizer()
    qwen25 = narrowed_config("qwen2_5_vl_3b", 2, 2, tokenizer)
    assert (qwen25.text_config.hidden_size, qwen25.text_config.vocab_size) == (2048, 151936)
    assert qwen25.vision_config.fullatt_block_indexes == [0, 1]  # [7, 15, 23, 31] of 32 blocks
    qwen3 = narrowed_config("qwen3_vl_8b", 3, 9, tokenizer)
    assert qwen3.vision_config.deepstack_visual_indexes == [2, 4, 7]  # [8, 16, 24] of 27 blocks
    assert qwen3.video_token_id == tokenizer.convert_tokens_to_ids("<|video_pad|>")


@pytest.mark.slow
def test_model_tiny_like_builds_a_real_architecture_that_runs(tmp_path: Path) -> None:
    out = tmp_path / "like"
    result = run_cli(
        "model", "tiny", "--like", "qwen2_5_vl_3b", "--layers", "1", "--vision-depth", "1", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    info = json.loads(run_cli("model", "info", str(out), "--json", check=True).stdout)
    assert info["text"]["hidden_size"] == 2048 and info["text"]["vocab_size"] == 151936
    assert info["text"]["layers"] == 1 and info["vision"]["depth"] == 1 and info["dtype"] == "bfloat16"
    model, processor = load_model(ModelConfig(name_or_path=str(out), device="cpu", dtype="float32"))
    clip = VideoSpec(fps=None, num_frames=2, min_pixels=784, max_pixels=3136, total_pixels=None)
    bench = generate_synthvau(tmp_path / "synth", n=1, split_ratio=(1.0,), size=(112, 112))
    video = decode(next((bench / "videos").iterdir()), clip)
    inputs = build_inputs(processor, [[{"role": "user", "content": [{"type": "video"}]}]], [video])
    logits = model(**inputs).logits
    assert logits.shape[-1] == 151936 and logits.isfinite().all()
    assert "built qwen2_5_vl_3b in" in result.stdout
    assert (
        run_cli("model", "tiny", "--arch", "qwen2_vl", "--full", "--out", str(tmp_path / "x")).returncode == 2
    )


def test_plan_of_the_shipped_3b_configs_is_offline_and_adds_up() -> None:
    for name, job in (("qwen2_5_vl_3b/tag", "grpo"), ("qwen2_5_vl_3b/sft", "sft")):
        plan = plan_json("--config", name, "--gpus", "8", "--engine", "zero3")
        assert plan["job"] == job and plan["parameters"] == 3_754_622_976
        assert plan["trainable_parameters"] == plan["parameters"]
        parts = {key: value for key, value in plan["per_gpu_bytes"].items() if key != "total"}
        assert sum(parts.values()) == plan["per_gpu_bytes"]["total"]
        assert plan["fits"] is True
        # ZeRO-3 shards the optimizer over the 8 GPUs; DDP keeps all of it
        assert plan["engines"]["zero3"]["total"] < plan["engines"]["ddp"]["total"]
    lora = plan_json("--config", "qwen2_5_vl_3b/tag", "model.lora.enabled=true")
    assert 1e7 < lora["trainable_parameters"] < 1e8 and "reference" not in lora["per_gpu_bytes"]


def test_a_config_that_does_not_fit_names_the_change_that_would(tmp_path: Path) -> None:
    plan = plan_json("--config", "qwen2_5_vl_3b/tag", "--gpu-memory", "40GB")
    assert plan["fits"] is False and plan["suggestions"]
    first = plan["suggestions"][0]
    assert first["total"] <= 40e9
    # an override suggestion, applied, fits
    override = next(s for s in plan["suggestions"] if "=" in s["how"] and " " not in s["how"])
    again = plan_json("--config", "qwen2_5_vl_3b/tag", override["how"], "--gpu-memory", "40GB")
    assert again["fits"] is True
    text = run_cli("plan", "--config", "qwen2_5_vl_3b/tag", "--gpu-memory", "40GB").stdout
    assert "does not fit" in text and "cheapest change that fits" in text
    tiny = run_cli("plan", "--config", "qwen2_5_vl_3b/tag", "--gpu-memory", "1GB").stdout
    assert "no single change makes it fit" in tiny


def test_plan_refuses_bad_options_in_one_line(tmp_path: Path) -> None:
    bad = run_cli("plan", "--config", "qwen2_5_vl_3b/tag", "--gpu-memory", "eighty")
    assert bad.returncode == 2 and "not a memory size" in bad.stderr
    ambiguous = tmp_path / "x.yaml"
    ambiguous.write_text("model: {name_or_path: Qwen/Qwen2.5-VL-3B-Instruct}\n")
    result = run_cli("plan", "--config", str(ambiguous))
    assert result.returncode != 0 and "pass --job" in result.stderr


def test_memory_maths_per_engine() -> None:
    shapes = Shapes(
        parameters=3_000_000_000,
        vision_parameters=600_000_000,
        largest_layer_parameters=80_000_000,
        hidden=2048,
        intermediate=11008,
        layers=36,
        q_dim=2048,
        kv_dim=256,
        vocab=151936,
        vision_hidden=1280,
        vision_intermediate=3420,
        vision_depth=32,
        merge=2,
        patch_values=1176,
        qk_norm=False,
        vision_mlp_tensors=4,
    )
    work = Workload(
        job="grpo",
        shapes=shapes,
        trainable=shapes.parameters,
        weight_bytes=2,
        bf16=True,
        separate_reference=True,
        gradient_checkpointing=False,
        prompts=1,
        samples=8,
        visual_tokens=2048,
        text_tokens=256,
        new_tokens=512,
        lora=False,
        lora_dropout=False,
        padding_mask=False,
        vision_trains=True,
    )
    ddp, zero3 = estimate(work, "ddp", 8), estimate(work, "zero3", 8)
    # DDP: fp32 weights and AdamW's two moments, whole; ZeRO-3: bf16 weights, fp32 masters and moments, /8
    assert ddp.persistent["weights"] == 4 * shapes.parameters
    assert ddp.persistent["optimizer_states"] == 8 * shapes.parameters
    assert zero3.persistent["weights"] == 2 * shapes.parameters // 8
    assert zero3.persistent["optimizer_states"] == 8 * shapes.parameters // 8
    # ZeRO-3 gathers the whole policy for generation, once per rollout cycle
    assert phases(work, "zero3", 8)["generation"]["gathered_weights"] == 2 * shapes.parameters
    assert "gathered_weights" not in phases(work, "zero2", 8)["generation"]
    checkpointed = estimate(replace(work, gradient_checkpointing=True), "ddp", 8)
    assert checkpointed.phase["activations"] < ddp.phase["activations"] / 5
    # the KV cache grows with every sequence's length
    kv = estimate(replace(work, job="eval", new_tokens=1024), "ddp", 1).phase["kv_cache"]
    assert kv == 8 * (2048 + 256 + 1024) * 36 * 2 * 256 * 2
    # the shared prefix: one row of prompt + 8 completions instead of 8 rows; with flash-attention (no
    # padding mask) the layout is not used and nothing changes
    sdpa = replace(work, padding_mask=True)
    shared = phases(replace(sdpa, shared_prefix=True), "ddp", 8)
    unshared = phases(sdpa, "ddp", 8)
    sequence = 2048 + 256 + 8 * 512
    assert shared["update"]["activations"] < unshared["update"]["activations"] / 2
    assert shared["reference"]["activations"] * 8 * (2048 + 256 + 512) == (
        unshared["reference"]["activations"] * sequence
    )
    assert phases(replace(work, shared_prefix=True), "ddp", 8) == phases(work, "ddp", 8)


def _tiny_plan_setup(tmp_path: Path) -> tuple[Path, Path]:
    bench = generate_synthvau(tmp_path / "synth", n=6, split_ratio=(1.0,), size=(448, 336))
    model = build_tiny_model("qwen2_5_vl", tmp_path / "tiny", hidden_size=256, num_layers=4)
    return bench, model


@pytest.mark.slow
def test_plan_is_within_15_percent_of_real_cpu_runs(tmp_path: Path) -> None:
    bench, model = _tiny_plan_setup(tmp_path)
    common = {
        "model": {"name_or_path": str(model), "dtype": "float32"},
        "video": {
            "fps": None,
            "num_frames": 16,
            "min_pixels": 784,
            "max_pixels": 150528,
            "total_pixels": None,
        },
        "cache": {"enabled": False},
        "loader": {"num_workers": 1},
        "optim": {"learning_rate": 1e-4},
    }
    jobs = {
        "grpo": {
            "data": {"bench": str(bench), "split": "train", "tasks": ["tag"]},
            "num_generations": 4,
            "max_completion_length": 64,
            "loss": {"beta": 0.04},
            "per_device_train_batch_size": 1,
        },
        "sft": {
            "data": {"bench": str(bench), "split": "train", "tasks": ["qa", "tag", "cls"]},
            "per_device_train_batch_size": 4,
        },
    }
    # freed tensors leave the resident set at once, so the peak follows live memory (see MemoryMeter)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    for job, body in jobs.items():
        out = tmp_path / f"run-{job}"
        config = tmp_path / f"{job}.yaml"
        run = {"output_dir": str(out), "max_steps": 2, "save_steps": 100, "resume": "never"}
        config.write_text(yaml.safe_dump({**common, **body, "run": run}))
        trained = subprocess.run(
            [str(VAUR1), "train", job, "--config", str(config)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert trained.returncode == 0, trained.stderr[-2000:]
        measured = max(record["memory/peak_gib"] for record in read_jsonl(out / "metrics.jsonl")) * 2**30
        planned = plan_json("--config", str(config), "--job", job, "--device", "cpu")
        assert planned["videos"].endswith("probed")
        ratio = planned["per_gpu_bytes"]["total"] / measured
        assert 0.85 <= ratio <= 1.15, (
            f"{job}: plan {planned['per_gpu_bytes']['total'] / 2**30:.3f} GiB, measured {measured / 2**30:.3f} GiB"
        )


def test_visual_tokens_of_the_plan_equal_the_processors(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    bench = generate_synthvau(tmp_path / "synth", n=2, split_ratio=(1.0,), size=(320, 240))
    clip = sorted((bench / "videos").iterdir())[0]
    for arch in ("qwen2_5_vl", "qwen3_vl"):
        factor = 32 if arch == "qwen3_vl" else 28
        spec = {
            "fps": 2.0,
            "max_frames": 64,
            "min_pixels": 4 * factor**2,
            "max_pixels": 64 * factor**2,
            "factor": factor,
        }
        config = tmp_path / f"eval-{arch}.yaml"
        config.write_text(
            yaml.safe_dump(
                {"model": {"name_or_path": str(tiny_models[arch])}, "video": spec, "out": str(tmp_path / "e")}
            )
        )
        planned = plan_json("--config", str(config), "--video", str(clip))
        assert planned["job"] == "eval"
        _, processor = load_model(ModelConfig(name_or_path=str(tiny_models[arch]), device="cpu"))
        video = decode(clip, VideoSpec(**spec))
        inputs = build_inputs(processor, [[{"role": "user", "content": [{"type": "video"}]}]], [video])
        video_pad = processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
        assert planned["visual_tokens_per_video"] == int((inputs["input_ids"] == video_pad).sum())


def test_frame_cache_size_matches_the_filled_cache_and_warns(tmp_path: Path) -> None:
    bench = generate_synthvau(tmp_path / "synth", n=4, split_ratio=(1.0,), size=(320, 240))
    config = tmp_path / "sft.yaml"
    cache_dir = tmp_path / "cache"
    config.write_text(
        yaml.safe_dump(
            {
                "model": {"name_or_path": "Qwen/Qwen2.5-VL-3B-Instruct"},
                "data": {"bench": str(bench), "split": "train"},
                "cache": {"dir": str(cache_dir), "max_gb": 0.001},
                "run": {"output_dir": str(tmp_path / "run")},
            }
        )
    )
    plan = plan_json("--config", str(config), "--job", "sft")
    cache = plan["frame_cache"]
    assert cache["videos"] == 4 and cache["fits"] is False
    text = run_cli("plan", "--config", str(config), "--job", "sft").stdout
    assert "it will evict" in text
    filled = run_cli(
        "video",
        "cache",
        str(bench / "train.csv"),
        "--videos",
        str(bench / "videos"),
        "--cache-dir",
        str(cache_dir),
        "--max-gb",
        "1",
    )
    assert filled.returncode == 0, filled.stderr
    on_disk = sum(f.stat().st_size for f in cache_dir.rglob("*.frames"))
    assert 0.99 * on_disk <= cache["bytes"] <= on_disk
    warned = run_cli(
        "video",
        "cache",
        str(bench / "train.csv"),
        "--videos",
        str(bench / "videos"),
        "--cache-dir",
        str(tmp_path / "c2"),
        "--max-gb",
        "0.001",
    )
    assert "warning" in warned.stdout and "--max-gb" in warned.stdout


def test_an_eval_plan_with_a_scan_gives_its_memory_per_call_and_a_speed_estimate(tmp_path: Path) -> None:
    from vaur1.eval.config import load_eval_config
    from vaur1.plan import make_plan

    data = {
        "model": {"name_or_path": "Qwen/Qwen2.5-VL-3B-Instruct"},
        "video": {"fps": None, "num_frames": 16},
    }
    config = tmp_path / "eval.yaml"
    config.write_text(yaml.safe_dump(data))
    cfg = load_eval_config(str(config))
    plain = make_plan("eval", cfg)
    assert plain["scan"] is None
    scan = make_plan("eval", cfg, scan=True)["scan"]
    # three prompts a window, four windows a call: more sequences than eval's batch of 8 at once
    assert scan["windows_per_call"] == 4 and scan["peak_bytes"] > plain["per_gpu_bytes"]["total"]
    assert scan["visual_tokens_per_window"] == plain["visual_tokens_per_video"]  # 16 frames either way
    wider = make_plan("eval", load_eval_config(str(config), ["scan.stride=32"]))["scan"]
    assert wider["video_minutes_per_minute_estimate"] == pytest.approx(
        2 * scan["video_minutes_per_minute_estimate"]
    )
    a100 = make_plan("eval", cfg, scan=True, gpu_kind="a100")["scan"]
    assert a100["seconds_per_call_estimate"] > scan["seconds_per_call_estimate"]
    base = ["plan", "--config", str(config), "--job", "eval", "--scan"]
    text = run_cli(*base, check=True).stdout
    assert "video-minutes per minute on one H100 (a roofline estimate, not measured)" in " ".join(
        text.split()
    )
    bad = run_cli(*base, "--gpu-kind", "tpu")
    assert (
        bad.returncode == 2
        and "'tpu': the scan's speed is estimated for h100, h200, a100, l40s" in bad.stderr
    )
