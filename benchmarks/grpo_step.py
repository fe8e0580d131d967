"""GRPO step speed: vaur1 with the shared prefix, vaur1 with one row per completion, and TRL's
GRPOTrainer fed the frames as a list of images, in one run.

    .venv/bin/python benchmarks/grpo_step.py [--steps 6] [--rounds 3] [--generations 8] [--prompts 2]
                                             [--tokens 128] [--frames 16] [--clip-size 160x120]
                                             [--max-pixels 9408] [--model DIR] [--bf16] [--no-trl]

The default setting is 16 frames, G = 8, 128 new tokens on the tiny Qwen2.5-VL (96 visual tokens per
prompt); the long-prompt setting adds `--clip-size 448x336 --max-pixels 150528` (1,536 visual tokens,
as a 3B config's short clip). TRL 1.16 cannot train on video (its GRPO trainer passes no video inputs):
the only way it trains on pixels is the frames as separate images, which costs twice the visual tokens
and loses the video's time positions; its image processor is set to take them at the frames' size.
Every side gets, in one process:

- the same model: the default tiny Qwen2.5-VL built by `vaur1 model tiny` (or --model), fp32;
- the same prompts: SynthVAU train examples (QA, TAG, CLS) in think mode, the same prompt text;
- the same frames: the VideoSpec's uniformly sampled frames, decoded once (vaur1 reads them from
  its frame cache, TRL from its dataset);
- the same G, prompts per step and completion length limit, sampling (temperature 1, no top-k or
  top-p), loss (dapo, beta 0.04, so all keep a frozen reference copy), optimizer and reward
  functions. A random model seldom ends its turn, so most completions run to --tokens; the median
  mean completion length is printed (TRL also stops at <|endoftext|>, vaur1 only at <|im_end|>, so
  TRL's are a little shorter).

The sides take turns for --rounds rounds of --steps optimizer steps; each round's first step is a
warm-up and left out. Reported: the median step time, samples (completions) per second, and where
the time goes: generation, reward scoring, vaur1's old/reference log-prob passes and its update
(forward, backward and optimizer step, vision encoding included), and the rest. vaur1's split comes
from its metrics.jsonl, TRL's from timers around `generate` and the reward function and a callback
around each step; on a GPU also the peak memory. Then the ratios: the shared prefix against one row
per completion for the log-prob passes, the update and the step (target: at least 2x for the two
phases), and vaur1 against TRL in samples per second (target: at least 3x).

On a GPU, the large setting (a Qwen2.5-VL-3B checkpoint, here with any weights; fp32 weights under
bf16 autocast, so `auto` attention is sdpa, which the shared prefix runs on):

    python benchmarks/grpo_step.py --model DIR --frames 16 --generations 8 --tokens 256 --bf16 \
        --clip-size 448x336 --max-pixels 200704 --threads 0
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
from accelerate.state import AcceleratorState

import vaur1.model  # noqa: F401  (the torchvision shim, before transformers and trl)
from vaur1.bench.synth import generate_synthvau
from vaur1.bench.tasks import Example
from vaur1.config import from_dict
from vaur1.data import DataConfig
from vaur1.model import build_tiny_model, vision_placeholder_ids
from vaur1.model.load import ModelConfig, load_model
from vaur1.prompts import prompt_text
from vaur1.rewards import RewardConfig, score
from vaur1.rl.config import GRPOTrainConfig
from vaur1.video.cache import CachedDecoder
from vaur1.video.frames import DecodedVideo
from vaur1.video.spec import VideoSpec

CLIPS = 16
LEARNING_RATE = 1e-5
BETA = 0.04


def video_spec(args: argparse.Namespace) -> VideoSpec:
    return VideoSpec(
        fps=None, num_frames=args.frames, min_pixels=784, max_pixels=args.max_pixels, total_pixels=None
    )


def prepare(args: argparse.Namespace, workdir: Path) -> tuple[Path, DataConfig, list[Example], dict]:
    """The model, the SynthVAU examples and their frames (which also fills the frame cache)."""
    model = args.model
    if model is None:
        model = workdir / "tiny-qwen2_5_vl"
        if not (model / "config.json").is_file():
            build_tiny_model("qwen2_5_vl", model)
    width, height = args.clip_size
    bench = workdir / f"synthvau-{width}x{height}"
    if not (bench / "train.csv").is_file():
        generate_synthvau(bench, n=CLIPS, seed=0, size=(width, height))
    data = DataConfig(bench=str(bench), split="train", tasks=["qa", "tag", "cls"])
    examples = data.load()
    decoder = CachedDecoder(video_spec(args), workdir / "frames")
    videos = {example.key: decoder.get(data.roots().resolve(example)) for example in examples}
    return model, data, examples, videos


def run_vaur1(
    args: argparse.Namespace, model: Path, data: DataConfig, workdir: Path, out: Path, shared: bool
) -> list[dict]:
    from vaur1.rl.trainer import train

    cfg = from_dict(
        GRPOTrainConfig,
        {
            "model": {"name_or_path": str(model), "dtype": "float32", "attn_implementation": args.attention},
            "data": {"bench": data.bench, "split": data.split, "tasks": list(data.tasks)},
            "video": dataclasses.asdict(video_spec(args)),
            "cache": {"dir": str(workdir / "frames")},
            "loader": {"num_workers": 1},
            "mode": "think",
            "num_generations": args.generations,
            "max_completion_length": args.tokens,
            "shared_prefix": shared,
            "per_device_train_batch_size": args.prompts,
            "bf16": args.bf16,
            "loss": {"loss_type": "dapo", "beta": BETA},
            "optim": {"learning_rate": LEARNING_RATE, "lr_scheduler": "constant"},
            "run": {"output_dir": str(out), "max_steps": args.steps, "save_steps": 10**6, "resume": "never"},
        },
    )
    train(cfg)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [
        {
            "step": r["time/step"],
            "generate": r["time/rollout"],
            "rewards": r["time/scoring"],
            "decode": r["time/decode"],
            "reference": r["time/reference"],
            "update": r["time/update"],
            "length": r["completions/mean_length"],
        }
        for r in records[1:]
    ]


def run_trl(
    args: argparse.Namespace,
    model_dir: Path,
    examples: list[Example],
    videos: dict[str, DecodedVideo],
    out: Path,
) -> list[dict]:
    import datasets
    from PIL import Image
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    model, processor = load_model(
        ModelConfig(name_or_path=str(model_dir), dtype="float32", attn_implementation=args.attention)
    )
    # the images at the frames' own size, as vaur1's video processor takes them (a tiny processor's
    # image limit would otherwise shrink them below vaur1's frames)
    processor.image_processor.size = {"longest_edge": max(args.max_pixels, 3136), "shortest_edge": 3136}
    some_frame = next(iter(videos.values())).frames[0]
    grid = processor.image_processor(images=[Image.fromarray(some_frame)], return_tensors="pt")[
        "image_grid_thw"
    ]
    visual_tokens = args.frames * int(grid.prod()) // processor.image_processor.merge_size**2
    by_key = {example.key: example for example in examples}
    rows = [
        {
            "prompt": [{"role": "user", "content": prompt_text(example, "think")}],
            "images": [Image.fromarray(frame) for frame in videos[example.key].frames],
            "key": example.key,
        }
        for example in examples
    ]
    timers = {"generate": 0.0, "rewards": 0.0}

    def vaur1_rewards(completions, key, **kwargs) -> list[float]:
        started = time.perf_counter()
        values = [
            score(completion[0]["content"], by_key[k], RewardConfig())[0]
            for completion, k in zip(completions, key, strict=True)
        ]
        timers["rewards"] += time.perf_counter() - started
        return values

    real_generate = model.generate

    def timed_generate(*generate_args, **generate_kwargs):
        started = time.perf_counter()
        try:
            return real_generate(*generate_args, **generate_kwargs)
        finally:
            timers["generate"] += time.perf_counter() - started

    model.generate = timed_generate
    steps: list[dict] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, *unused, **kwargs):
            timers.update(generate=0.0, rewards=0.0, started=time.perf_counter())

        def on_step_end(self, *unused, **kwargs):
            seconds = time.perf_counter() - timers["started"]
            steps.append({"step": seconds, "generate": timers["generate"], "rewards": timers["rewards"]})

    config = GRPOConfig(
        output_dir=str(out),
        per_device_train_batch_size=args.prompts * args.generations,  # TRL counts completions
        num_generations=args.generations,
        max_completion_length=args.tokens,
        max_steps=args.steps,
        learning_rate=LEARNING_RATE,
        lr_scheduler_type="constant",
        beta=BETA,
        loss_type="dapo",
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        generation_kwargs={"suppress_tokens": vision_placeholder_ids(processor)},
        bf16=args.bf16,
        gradient_checkpointing=False,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[vaur1_rewards],
        args=config,
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=processor,
        callbacks=[StepTimer()],
    )
    trainer.train()
    lengths = [
        log["completions/mean_length"]
        for log in trainer.state.log_history
        if "completions/mean_length" in log
    ]
    for step, length in zip(steps, lengths, strict=True):
        step["length"] = length
        step["visual"] = visual_tokens
    return steps[1:]


def median(steps: list[dict], key: str) -> float:
    return statistics.median(step[key] for step in steps)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--steps", type=int, default=6, help="optimizer steps per round (the first is a warm-up)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--generations", type=int, default=8, help="G: completions per prompt")
    parser.add_argument("--prompts", type=int, default=2, help="prompts per step")
    parser.add_argument("--tokens", type=int, default=128, help="new tokens per completion")
    parser.add_argument("--frames", type=int, default=16, help="frames per video")
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=84 * 112,
        help="pixels per frame (default 84x112, within the tiny processor's image limit: no resizing for TRL)",
    )
    parser.add_argument(
        "--clip-size",
        type=lambda text: tuple(int(part) for part in text.split("x")),
        default=(160, 120),
        help="SynthVAU clips' width x height (default 160x120; 448x336 with --max-pixels 150528 gives a "
        "long prompt of 1,536 visual tokens)",
    )
    parser.add_argument(
        "--model", type=Path, help="a Qwen2.5-VL checkpoint (default: a tiny one in --workdir)"
    )
    parser.add_argument("--bf16", action="store_true", help="bf16 mixed precision on both sides")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    parser.add_argument(
        "--attention",
        default="auto",
        choices=["auto", "sdpa", "eager", "flash_attention_2"],
        help="model.attn_implementation of every side (auto: sdpa on a CPU)",
    )
    parser.add_argument(
        "--no-trl", action="store_true", help="only vaur1, with and without the shared prefix"
    )
    parser.add_argument(
        "--workdir", type=Path, help="model, clips and frame cache (default: a temporary folder)"
    )
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2 (the first step of a round is a warm-up)")
    if args.threads:
        torch.set_num_threads(args.threads)

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as scratch:
        workdir = args.workdir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        model, data, examples, videos = prepare(args, workdir)
        first = next(iter(videos.values()))
        print(
            f"model {model}; {len(examples)} prompts; {args.prompts} prompts x G={args.generations} per step, "
            f"{args.tokens} new tokens; {args.frames} frames of {first.frames.shape[1]}x{first.frames.shape[2]}; "
            f"torch threads {torch.get_num_threads()}"
        )
        sides = {
            "vaur1": functools.partial(run_vaur1, args, model, data, workdir, shared=True),
            "unshared": functools.partial(run_vaur1, args, model, data, workdir, shared=False),
            "trl": functools.partial(run_trl, args, model, examples, videos),
        }
        if args.no_trl:
            del sides["trl"]
        results: dict[str, list[dict]] = {name: [] for name in sides}
        peak = dict.fromkeys(sides, 0.0)
        for round_index in range(args.rounds):
            out = workdir / f"round-{round_index}"
            shutil.rmtree(out, ignore_errors=True)
            for name, run_side in sides.items():
                if torch.cuda.is_available():
                    torch.cuda.reset_peak_memory_stats()
                results[name] += run_side(out=out / name)
                if torch.cuda.is_available():
                    peak[name] = max(peak[name], torch.cuda.max_memory_allocated() / 2**30)
                AcceleratorState._reset_state(True)  # each trainer builds its own Accelerator
            print(f"round {round_index + 1}/{args.rounds} done")
    report(args, first, results, peak)


def report(args: argparse.Namespace, first: DecodedVideo, results: dict[str, list[dict]], peak: dict) -> None:
    samples = args.prompts * args.generations
    height, width = first.frames.shape[1:3]
    tokens_per_frame = (height // 28) * (width // 28)
    video_tokens = args.frames // 2 * tokens_per_frame
    visual = {"vaur1": video_tokens, "unshared": video_tokens}
    if "trl" in results:
        visual["trl"] = results["trl"][0]["visual"]
    titles = {"vaur1": "vaur1 (shared)", "unshared": "vaur1 (per row)", "trl": "TRL (images)"}
    names = list(results)
    steps = len(results["vaur1"])
    print(f"\n{'median over ' + str(steps) + ' steps':<34}" + "".join(f"{titles[n]:>17}" for n in names))

    def phase(key: str):
        return lambda name: f"{median(results[name], key):.3f}" if key in results[name][0] else "-"

    rows = [
        ("visual tokens per prompt", lambda name: f"{visual[name]}"),
        ("completion tokens", lambda name: f"{median(results[name], 'length'):.1f}"),
        ("step, s", phase("step")),
        ("samples/s", lambda name: f"{samples / median(results[name], 'step'):.2f}"),
        ("  generate, s", phase("generate")),
        ("  rewards, s", phase("rewards")),
        ("  old/ref log-probs, s", phase("reference")),
        ("  update (forward, backward, optim), s", phase("update")),
        (
            "  rest of the step, s",
            lambda name: (
                f"{statistics.median(s['step'] - s['generate'] - s['rewards'] for s in results[name]):.3f}"
            ),
        ),
    ]
    if torch.cuda.is_available():
        rows.append(("peak GPU memory, GiB", lambda name: f"{peak[name]:.1f}"))
    for label, cell in rows:
        print(f"{label:<34}" + "".join(f"{cell(name):>17}" for name in names))
    shared, unshared = results["vaur1"], results["unshared"]
    print("\nshared prefix against one row per completion (same run):")
    for key, label in (("reference", "old/ref log-probs"), ("update", "update"), ("step", "step")):
        print(
            f"  {label}: {median(unshared, key) / median(shared, key):.2f}x faster (target >= 2x for the phases)"
        )
    if "trl" in results:
        ratio = median(results["trl"], "step") / median(shared, "step")
        print(f"vaur1 / TRL samples per second: {ratio:.2f}x (target >= 3x)")


if __name__ == "__main__":
    main()
