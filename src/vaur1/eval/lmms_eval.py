"""VAU-Bench as lmms-eval tasks, scored with vaur1's own parser and metrics.

    vaur1 data export vau-bench out/lmms --format lmms-eval --videos msad=/data/msad --videos ucf=...
    lmms-eval eval --include_path out/lmms --tasks vau_bench_qa,vau_bench_tag,vau_bench_cls \
        --model qwen2_5_vl --model_args pretrained=Qwen/Qwen2.5-VL-3B-Instruct

`write_tasks` puts the benchmark next to one task YAML per (task, test split): `vau_bench_qa_msad`,
`vau_bench_tag_ucf_crime`, ... tagged `vau_bench_qa`, `vau_bench_tag` and `vau_bench_cls`, so one name
runs a task on every dataset. The YAMLs name the functions below (lmms-eval imports them by their
dotted path): the docs of a task are the examples `vaur1 eval run` scores, the prompt is vaur1's
(direct or think mode), and each reply is scored by `score_sample`, then summarised by `summarize`:
the numbers equal `vaur1 eval metrics` on the same replies, in points.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

from vaur1.bench.datasets_io import features, row_sample, to_dataset_dict
from vaur1.bench.schema import NORMAL, Sample
from vaur1.bench.tasks import Example, make_example, task_view
from vaur1.errors import VaurError
from vaur1.eval.metrics import SampleScore, score_sample, summarize
from vaur1.files import write_text
from vaur1.parse import format_interval
from vaur1.prompts import prompt_text
from vaur1.video.roots import VideoRoots
from vaur1.vocab import CLS, MODES, QA, SCORED_TASKS, TAG, task_metrics

# How task names spell a test split's source (the paper's dataset names).
SOURCE_NAMES: dict[str, str] = {"msad": "msad", "ucf": "ucf_crime", "ecva": "ecva", "synth": "synth"}
DATA_FOLDER = "data"  # the DatasetDict, next to the YAMLs
TASK_KEY = "vaur1_task"  # the column that tells a doc's task to the shared functions below


# ---- what lmms-eval calls ---------------------------------------------------------------------


def _docs(dataset, task: str):
    """The rows that have the task's annotation (those `vaur1 eval run` scores), marked with the task."""
    schema = features()
    keep = [i for i, row in enumerate(dataset) if task_view([row_sample(row, "", schema=schema)], task)]  # type: ignore[arg-type]
    return dataset.select(keep).add_column(TASK_KEY, [task] * len(keep))


def qa_docs(dataset):
    return _docs(dataset, QA)


def tag_docs(dataset):
    return _docs(dataset, TAG)


def cls_docs(dataset):
    return _docs(dataset, CLS)


def _example(doc: dict[str, Any]) -> Example:
    if TASK_KEY not in doc:
        raise VaurError(f"doc {doc.get('id')!r}: no {TASK_KEY} column (the task YAML's process_docs sets it)")
    return make_example(row_sample(doc, ""), doc[TASK_KEY])


def doc_to_visual(doc: dict[str, Any], lmms_eval_specific_kwargs: dict | None = None) -> list[str]:
    """The video file, from the video roots written into the task YAML."""
    sample = row_sample(doc, "")
    roots = VideoRoots(**(lmms_eval_specific_kwargs or {}).get("video_roots", {}))
    path = roots.resolve(sample)
    if not path.is_file():
        raise VaurError(f"{sample.id}: video {path} not found (video roots in the task YAML: {roots})")
    return [str(path)]


def doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict | None = None) -> str:
    """vaur1's prompt for the doc's task, in the YAML's mode (`direct` unless set to `think`)."""
    mode = (lmms_eval_specific_kwargs or {}).get("mode", "direct")
    if mode not in MODES:
        raise VaurError(f"lmms_eval_specific_kwargs.mode: {mode!r} is not a prompt mode ({', '.join(MODES)})")
    return prompt_text(_example(doc), mode)


def doc_to_target(doc: dict[str, Any]) -> str:
    example = _example(doc)
    if example.task == QA:
        return example.answer or ""
    if example.task == TAG:
        return NORMAL if example.is_normal else format_interval(example.interval)  # type: ignore[arg-type]
    return example.anomaly_class or ""


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, dict]:
    """The reply's score under every metric of the doc's task (one SampleScore, shared). The key is not
    lmms-eval's `score`: lmms-eval would take that for a 0/1 item score and compute its own stderr."""
    example = _example(doc)
    score = asdict(score_sample(example, results[0] if results else None))
    return {
        metric.key: {"task": example.task, "metric": metric.key, "sample_score": score}
        for metric in task_metrics(example.task)
    }


def aggregate(items: list[dict]) -> float | None:
    """One metric over every scored doc, as `vaur1 eval metrics` computes it (points)."""
    if not items:
        return None
    task, metric = items[0]["task"], items[0]["metric"]
    # The interval comes from the bootstrap, which lmms-eval does not report: one resample is enough.
    return summarize(task, [SampleScore(**item["sample_score"]) for item in items], resamples=1)[metric]


# ---- writing the tasks ------------------------------------------------------------------------


def _task_names(samples: list[Sample]) -> dict[str, str]:
    """Each split's name in task names: its source's where it holds one source, else its own."""
    names = {}
    for split in dict.fromkeys(s.split for s in samples):
        sources = {s.source for s in samples if s.split == split}
        name = SOURCE_NAMES.get(next(iter(sources)), split) if len(sources) == 1 else split
        names[split] = re.sub(r"[^a-z0-9_]+", "_", name.lower())
    if len(set(names.values())) < len(names):
        raise VaurError(
            f"splits {', '.join(names)} would give tasks of the same name: export them separately"
        )
    return names


def _quoted(value: object) -> str:
    """A YAML scalar for text from the user or the data (a path may hold `#` or `: `): JSON's double-
    quoted strings are YAML's, so the value reads back exactly."""
    return json.dumps(str(value), ensure_ascii=False)


def _yaml(task: str, name: str, prefix: str, split: str, data: Path, settings: dict) -> str:
    module = __name__
    metrics = "".join(
        f"  - metric: {_quoted(metric.key)}\n"
        f"    aggregation: !function {module}.aggregate\n"
        f"    higher_is_better: {str(metric.higher_is_better).lower()}\n"
        for metric in task_metrics(task)
    )
    roots = "".join(
        f"      {_quoted(source)}: {_quoted(folder)}\n" for source, folder in settings["video_roots"].items()
    )
    return (
        f"# Written by `vaur1 data export --format lmms-eval`: VAU-Bench {task.upper()}, scored by vaur1.\n"
        f"task: {_quoted(f'{prefix}_{task}_{name}')}\n"
        f"tag: {_quoted(f'{prefix}_{task}')}\n"
        f"dataset_path: {_quoted(data)}\n"
        "dataset_kwargs:\n"
        "  load_from_disk: true\n"
        f"test_split: {_quoted(split)}\n"
        "output_type: generate_until\n"
        f"process_docs: !function {module}.{task}_docs\n"
        f"doc_to_visual: !function {module}.doc_to_visual\n"
        f"doc_to_text: !function {module}.doc_to_text\n"
        f"doc_to_target: !function {module}.doc_to_target\n"
        f"process_results: !function {module}.process_results\n"
        "generation_kwargs:\n"
        f"  max_new_tokens: {int(settings['max_new_tokens'])}\n"
        "  do_sample: false\n"
        "  temperature: 0\n"
        f"metric_list:\n{metrics}"
        "lmms_eval_specific_kwargs:\n"
        "  default:\n"
        f"    mode: {_quoted(settings['mode'])}\n"
        f"    video_roots:\n{roots}"
        "metadata:\n"
        "  version: 1\n"
    )


def write_tasks(
    samples: list[Sample],
    out: Path,
    roots: VideoRoots,
    splits: list[str] | None = None,
    mode: str = "direct",
    max_new_tokens: int = 1024,
    prefix: str = "vau_bench",
) -> list[str]:
    """The benchmark's `splits` (default: those whose name starts with `test`) as a DatasetDict under
    OUT/data and one lmms-eval task YAML per (task, split) next to it; returns the task names."""
    if mode not in MODES:
        raise VaurError(f"--mode {mode!r}: not a prompt mode ({', '.join(MODES)})")
    available = list(dict.fromkeys(s.split for s in samples))
    chosen = splits or [split for split in available if split.startswith("test")]
    unknown = [split for split in chosen if split not in available]
    if unknown or not chosen:
        raise VaurError(
            f"split {unknown[0] if unknown else '(none)'} is not in the benchmark ({', '.join(available)})"
        )
    kept = [s for s in samples if s.split in chosen]
    names = _task_names(kept)
    video_roots = {
        source: str(roots.folder(source).resolve()) for source in dict.fromkeys(s.source for s in kept)
    }
    settings = {"mode": mode, "max_new_tokens": max_new_tokens, "video_roots": video_roots}
    data = out / DATA_FOLDER
    to_dataset_dict(kept).save_to_disk(str(data))
    written = []
    for split, name in names.items():
        split_samples = [s for s in kept if s.split == split]
        for task in SCORED_TASKS:
            if task_view(split_samples, task):  # type: ignore[arg-type]
                write_text(
                    out / f"{prefix}_{task}_{name}.yaml",
                    _yaml(task, name, prefix, split, data.resolve(), settings),
                )
                written.append(f"{prefix}_{task}_{name}")
    return written
