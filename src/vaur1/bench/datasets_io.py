"""VAU-Bench as a Hugging Face `datasets.DatasetDict`, and back.

    vaur1 data export vau-bench out/vau-bench-ds            # one split per CSV, typed columns
    datasets.load_from_disk("out/vau-bench-ds")["test_msad"][0]["anomaly_class"]   # a ClassLabel id
    load_bench("out/vau-bench-ds")                          # a dataset in this shape is a bench again

Columns: `id`, `video` (the file name; the source folder comes from the video roots, as for CSVs),
`source` and `anomaly_class` as `ClassLabel`s (20 classes, 19 anomaly types and Normal), `question`,
`options` (four strings), `answer` (a `ClassLabel` over A-D), `key_objects`, `description`,
`reasoning` (the six annotated fields by name) and `interval` ([start, end] seconds). A missing
annotation is None (`-1` for a ClassLabel), never a placeholder.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from vaur1.bench.loader import LoadReport, RowReader
from vaur1.bench.schema import CLASSES, LETTERS, SOURCES, Reasoning, Sample
from vaur1.errors import VaurError

REASONING_KEYS: tuple[str, ...] = (
    "anomaly_type",
    "location",
    "key_evidence",
    "explanation",
    "cause_effect",
    "conclusion",
)


def features():
    from datasets import ClassLabel, Features, Sequence, Value

    text = Value("string")
    return Features(
        {
            "id": text,
            "video": text,
            "source": ClassLabel(names=list(SOURCES)),
            "question": text,
            "options": Sequence(text, length=4),
            "answer": ClassLabel(names=list(LETTERS)),
            "key_objects": text,
            "description": text,
            "reasoning": {key: text for key in REASONING_KEYS},
            "anomaly_class": ClassLabel(names=list(CLASSES)),
            "interval": Sequence(Value("float64"), length=2),
        }
    )


def sample_row(sample: Sample) -> dict[str, Any]:
    reasoning = sample.reasoning
    return {
        "id": sample.id,
        "video": sample.video,
        "source": sample.source,
        "question": sample.question,
        "options": list(sample.options) if sample.options else None,
        "answer": sample.answer,
        "key_objects": sample.key_objects,
        "description": sample.description,
        "reasoning": dict(zip(REASONING_KEYS, reasoning.fields(), strict=True)) if reasoning else None,
        "anomaly_class": sample.anomaly_class,
        "interval": list(sample.interval) if sample.interval else None,
    }


def to_dataset_dict(samples: list[Sample]):
    """A `DatasetDict` with one split per benchmark split."""
    from datasets import Dataset, DatasetDict

    schema = features()
    splits: dict[str, list[dict[str, Any]]] = {}
    for sample in samples:
        if sample.source not in SOURCES:
            raise VaurError(
                f"{sample.split}: video {sample.id!r} has no source ({', '.join(SOURCES)}): prefix the names "
                "(msad_, ucf_, ecva_) or name the file after its test set (test_msad.csv, ...)"
            )
        splits.setdefault(sample.split, []).append(sample_row(sample))
    if not splits:
        raise VaurError("the benchmark has no samples to export")
    return DatasetDict(
        {
            name: Dataset.from_list([_encode(row, schema) for row in rows], features=schema)
            for name, rows in splits.items()
        }
    )


def _encode(row: dict[str, Any], schema) -> dict[str, Any]:
    """ClassLabel columns take ids; a missing label is -1."""
    out = dict(row)
    for key in ("source", "answer", "anomaly_class"):
        out[key] = schema[key].str2int(row[key]) if row[key] is not None else -1
    return out


def is_dataset_dir(path: str | Path) -> bool:
    return (Path(path) / "dataset_dict.json").is_file()


def samples_from_dataset(
    path: str | Path, strict: bool = False, cleaning: Iterable[str] = ()
) -> dict[str, tuple[list[Sample], LoadReport]]:
    """The samples of a `DatasetDict` saved in this module's shape, by split, with each split's load
    report (`load_bench` reads it). Every row goes through the CSV loader's checks (`RowReader`): a
    folder from elsewhere is as untrusted as a CSV file, and its bad rows are skipped and counted alike."""
    from datasets import load_from_disk

    data = load_from_disk(str(path))
    missing = [key for key in features() if key not in data[next(iter(data))].features]
    if missing:
        raise VaurError(f"{path}: not a VAU-Bench dataset (no column {', '.join(missing)})")
    out: dict[str, tuple[list[Sample], LoadReport]] = {}
    for split, rows in data.items():
        schema = rows.features
        reader = RowReader(f"{path}/{split}", split, strict, cleaning, f"{Path(path).name}/{split}")
        for index, row in enumerate(rows):
            reader.report.rows_read += 1
            cells, source, reasoning = _row_cells(row, schema)
            sample = reader.add(cells, index + 1, source=source, video=row["video"] or "")
            if sample is not None and reasoning is not None:
                reader.samples[-1] = replace(sample, reasoning=reasoning, reasoning_format="dict")
        out[split] = reader.finish()
    return out


def _row_cells(row: dict[str, Any], schema) -> tuple[dict[str, str], str, Reasoning | None]:
    """(the row as the 13 CSV cells, its source label, its reasoning) for `RowReader`."""
    interval = row["interval"] or (-1.0, -1.0)
    options = list(row["options"] or [None] * 4) + [None] * 4
    cells = {
        "Video Name": row["id"] or "",
        "Question": row["question"] or "",
        **{f"Option {i + 1}": options[i] or "" for i in range(4)},
        "Correct Option": _label(schema, "answer", row["answer"]) or "",
        "Key Object": row["key_objects"] or "",
        "Description": row["description"] or "",
        "Reasoning": "",
        "Anomaly Class": _label(schema, "anomaly_class", row["anomaly_class"]) or "",
        "Start Time": repr(float(interval[0])),
        "End Time": repr(float(interval[1])),
    }
    reasoning = row["reasoning"]
    has_reasoning = reasoning is not None and any(reasoning.values())
    parsed = Reasoning(*(str(reasoning[key] or "") for key in REASONING_KEYS)) if has_reasoning else None
    return cells, _label(schema, "source", row["source"]) or "synth", parsed


def _label(schema, key: str, value: int) -> str | None:
    if value is None or value < 0:
        return None
    try:
        return schema[key].int2str(value)
    except ValueError:  # an id past the label list: written as itself, and refused as unknown
        return str(value)


def row_sample(row: dict[str, Any], split: str, line: int = 0, schema=None) -> Sample:
    """One row of a dataset in this module's shape as a Sample (ClassLabel ids read with `schema`)."""
    schema = schema or features()
    reasoning = row["reasoning"]
    has_reasoning = reasoning is not None and any(reasoning.values())
    options = row["options"]
    interval = row["interval"]
    return Sample(
        id=row["id"],
        split=split,
        source=_label(schema, "source", row["source"]) or "synth",
        video=row["video"],
        question=row["question"],
        options=tuple(options) if options else None,  # type: ignore[arg-type]
        answer=_label(schema, "answer", row["answer"]),
        key_objects=row["key_objects"],
        description=row["description"],
        reasoning=Reasoning(*(reasoning[key] or "" for key in REASONING_KEYS)) if has_reasoning else None,
        reasoning_format="dict" if has_reasoning else "missing",
        anomaly_class=_label(schema, "anomaly_class", row["anomaly_class"]),
        interval=(float(interval[0]), float(interval[1])) if interval else None,
        line=line,
    )
