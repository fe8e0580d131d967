"""Task views: the examples each task trains and evaluates on.

An `Example` carries everything a prompt, a reward and a metric need for one (video, task)
pair, and nothing that ties it to a CSV row, so rewards can also be fed from JSON.

  qa         rows with a question, four options and a readable answer letter
  tag        TAG positives (end > start) and normal videos (target `Normal`, `[-1, -1]`);
             rows with a missing interval are left out
  cls        rows with a class
  reasoning  rows with a description or a reasoning
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np

from vaur1.bench.schema import LETTERS, Sample, is_normal
from vaur1.errors import VaurError
from vaur1.vocab import ANOMALY, CLS, NORMAL, QA, REASONING, TAG, TASKS, Task, check_tasks


@dataclass(frozen=True)
class Example:
    """One (video, task) pair: the inputs of a prompt and the targets of a reward."""

    task: Task
    id: str  # the Video Name as in the CSV
    split: str = ""
    source: str = ""
    video: str = ""  # file name on disk, prefix stripped
    question: str | None = None  # qa only
    options: tuple[str, ...] | None = None  # qa only
    answer: str | None = None  # qa: the option letter
    interval: tuple[float, float] | None = None  # tag: (s, e) positive, (0, 0) normal
    anomaly_class: str | None = None
    description: str | None = None
    reasoning: str | None = None
    key_objects: str | None = None

    @property
    def key(self) -> str:
        """Unique across splits and tasks: what predictions and caches are keyed by."""
        return f"{self.split}/{self.id}/{self.task}"

    @property
    def is_normal(self) -> bool:
        return is_normal(self.anomaly_class, self.interval)

    @property
    def tag_answer(self) -> str:
        return NORMAL if self.is_normal else ANOMALY


def _applies(sample: Sample, task: Task) -> bool:
    if task == QA:
        return sample.has_qa
    if task == TAG:
        return sample.tag_role != "missing"
    if task == CLS:
        return sample.anomaly_class is not None
    if task == REASONING:
        return sample.description is not None or sample.reasoning is not None
    raise VaurError(f"unknown task {task!r} (tasks: {', '.join(TASKS)})")


def make_example(sample: Sample, task: Task) -> Example:
    interval = sample.interval if task == TAG else None
    return Example(
        task=task,
        id=sample.id,
        split=sample.split,
        source=sample.source,
        video=sample.video,
        # the QA fields belong to QA: a TAG or CLS item shown with the QA question would mislead
        question=sample.question if task == QA else None,
        options=sample.options if task == QA else None,
        answer=sample.answer if task == QA else None,
        interval=interval,
        anomaly_class=sample.anomaly_class,
        description=sample.description,
        reasoning=sample.reasoning.as_text() if sample.reasoning else None,
        key_objects=sample.key_objects,
    )


def task_view(samples: Iterable[Sample], task: Task) -> list[Example]:
    """The examples of one task, in the order of the samples."""
    return [make_example(s, task) for s in samples if _applies(s, task)]


def shuffle_options(example: Example, rng: np.random.Generator) -> Example:
    """A QA example with its options in a random order and its answer letter moved with them; any
    other example as it is.

    Training augmentation: with one fixed order per clip, a model can learn each training clip's
    letter instead of reading the options (SynthVAU's SFT model answered 98% of training questions
    and 31% of test questions), and a GRPO group that always gives the memorised letter has no
    advantage to learn from.
    """
    if example.task != QA or not example.options or example.answer not in LETTERS[: len(example.options)]:
        return example
    order = rng.permutation(len(example.options))
    options = tuple(example.options[i] for i in order)
    answer = LETTERS[int(np.flatnonzero(order == LETTERS.index(example.answer))[0])]
    return replace(example, options=options, answer=answer)


def parse_tasks(text: str | Iterable[str]) -> list[Task]:
    """Task names from a comma-separated string or a list; ConfigError for an unknown one."""
    names = [t.strip() for t in text.split(",")] if isinstance(text, str) else list(text)
    check_tasks(names)
    return names  # type: ignore[return-value]


def to_dataset(examples: list[Example]):
    """Export examples as a Hugging Face `datasets.Dataset` (one row per example)."""
    import datasets

    rows = [
        {
            "key": e.key,
            "task": e.task,
            "id": e.id,
            "split": e.split,
            "source": e.source,
            "video": e.video,
            "question": e.question,
            "options": list(e.options) if e.options else None,
            "answer": e.answer,
            "interval": list(e.interval) if e.interval else None,
            "anomaly_class": e.anomaly_class,
            "description": e.description,
            REASONING: e.reasoning,
            "key_objects": e.key_objects,
        }
        for e in examples
    ]
    features = datasets.Features(
        {
            "key": datasets.Value("string"),
            "task": datasets.Value("string"),
            "id": datasets.Value("string"),
            "split": datasets.Value("string"),
            "source": datasets.Value("string"),
            "video": datasets.Value("string"),
            "question": datasets.Value("string"),
            "options": datasets.List(datasets.Value("string")),
            "answer": datasets.Value("string"),
            "interval": datasets.List(datasets.Value("float64")),
            "anomaly_class": datasets.Value("string"),
            "description": datasets.Value("string"),
            REASONING: datasets.Value("string"),
            "key_objects": datasets.Value("string"),
        }
    )
    return datasets.Dataset.from_list(rows, features=features)
