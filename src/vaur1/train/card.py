"""Model cards: the README.md of every exported model directory, and what `vaur1 push` uploads.

A card says what a person needs to reuse or judge the model: the base model, the data (benchmark,
split, tasks), the VideoSpec the model was trained with (which `eval` and `analyze` apply again), the
prompts, the training settings and the budget actually spent, and, when evaluation runs are given,
their results in the VAU-R1 paper's layout. The YAML header is the Hub's model-card metadata.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from vaur1.bench import HUB_NAMES
from vaur1.config import dotted_get
from vaur1.files import iter_jsonl, write_text
from vaur1.layout import CONFIG, MODEL_VIDEO_SPEC, TrainRun
from vaur1.video.spec import model_video_spec

SETTINGS: tuple[str, ...] = (
    "optim.learning_rate",
    "optim.lr_scheduler",
    "run.num_epochs",
    "run.max_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "num_generations",
    "max_completion_length",
    "loss.loss_type",
    "loss.beta",
    "rollout.backend",
    "target",
    "mode",
    "bf16",
    "model.lora.enabled",
    "model.freeze_vision",
    "run.seed",
)


def model_card(model_dir: Path, run_dir: Path, eval_runs: list[Path] | None = None) -> str:
    """The card of `model_dir`, exported by the training run `run_dir`."""
    run = TrainRun(run_dir)
    config = (
        yaml.safe_load((run.root / CONFIG).read_text(encoding="utf-8"))
        if (run.root / CONFIG).is_file()
        else {}
    )
    kind = "GRPO" if "num_generations" in config else "SFT"
    configured = str(dotted_get(config, "model.name_or_path") or "unknown")
    # a Hub id names the base model; a local path says nothing to a reader and tells where files lie
    hub_id = (
        "/" in configured and not Path(configured).exists() and not configured.startswith(("/", ".", "~"))
    )
    base = (
        configured if hub_id or configured == "unknown" else f"a local checkpoint ({Path(configured).name})"
    )
    bench = str(dotted_get(config, "data.bench") or "")
    tasks = dotted_get(config, "data.tasks") or []
    records = [r for _, r in iter_jsonl(run.metrics) if r] if run.metrics.is_file() else []
    steps = records[-1]["step"] if records else 0
    seconds = sum(r.get("time/step", 0.0) for r in records)
    header = {
        "library_name": "transformers",
        "pipeline_tag": "video-text-to-text",
        "base_model": configured if hub_id else None,
        "datasets": ["7xiang/VAU-Bench"] if bench in HUB_NAMES else None,
        "tags": ["vaur1", "video-anomaly-understanding", kind.lower()],
    }
    lines = [
        "---",
        yaml.safe_dump({k: v for k, v in header.items() if v is not None}, sort_keys=False).strip(),
        "---",
        "",
        f"# {model_dir.name} ({kind} of {base})",
        "",
        f"Trained with vaur1 by {kind} for video anomaly understanding "
        f"(VAU-R1, arXiv 2505.23504): tasks {', '.join(tasks) or '?'} of {bench or '?'} "
        f"(split {dotted_get(config, 'data.split') or '?'}).",
        "",
        "## Video",
        "",
        f"`{model_video_spec(model_dir).describe()}`: vaur1's `eval run` and `analyze` read this spec from "
        f"the model directory ({MODEL_VIDEO_SPEC}) and sample frames the same way.",
        "",
        "## Training",
        "",
        "| setting | value |",
        "|---|---|",
        *(
            f"| {key} | {json.dumps(dotted_get(config, key))} |"
            for key in SETTINGS
            if dotted_get(config, key) is not None
        ),
        f"| optimizer steps run | {steps} |",
        f"| training time | {seconds / 3600:.2f} h |",
        "",
    ]
    if records:
        last = records[-1]
        shown = {
            k: last[k] for k in ("loss", "reward", "kl", "val_loss") if isinstance(last.get(k), (int, float))
        }
        if shown:
            lines += ["Last logged step: " + ", ".join(f"{k} {v:.4g}" for k, v in shown.items()), ""]
    if eval_runs:
        from vaur1.present.pages import render_markdown
        from vaur1.present.report import load_run, paper_layout, paper_layout_tables

        runs = [load_run(path) for path in eval_runs]
        lines += [
            "## Evaluation",
            "",
            render_markdown(paper_layout_tables(paper_layout(runs)), []).strip(),
            "",
        ]
    lines += [
        "## Use",
        "",
        "```bash",
        "vaur1 analyze clip.mp4 --model PATH_OR_REPO",
        "vaur1 eval run --model PATH_OR_REPO --bench vau-bench --split test_msad,test_ucf_crime,test_ecva",
        "```",
        "",
    ]
    return "\n".join(lines)


def write_model_card(model_dir: Path, run_dir: Path, eval_runs: list[Path] | None = None) -> Path:
    return write_text(Path(model_dir) / "README.md", model_card(Path(model_dir), Path(run_dir), eval_runs))
