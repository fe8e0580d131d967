"""An evaluation run with its report: what `vaur1 eval run` and `vaur1 eval score` do.

    metrics = evaluate(load_eval_config(...))      # predict what is left, score, report.md/.html
    metrics = rescore("runs/eval", ["offline_scorer=true"])

The computing is `vaur1.eval.run`; this adds the run's own report (`report.md`, `report.html`),
written while the run's folder is still held by the job that scored it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vaur1.eval import run as eval_run
from vaur1.eval.config import EvalConfig
from vaur1.layout import EvalRun
from vaur1.model.generators import Generator
from vaur1.present.report import write_report


def write_run_report(run_dir: Path) -> None:
    """The report of one run, in the run's folder."""
    write_report([run_dir], EvalRun(run_dir).report)


def evaluate(cfg: EvalConfig, generator: Generator | None = None, progress: bool = True) -> dict[str, Any]:
    """Predict every item not yet in the run directory, score it, and write its report."""
    return eval_run.run_eval(cfg, generator, progress, report=write_run_report)


def rescore(run_dir: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Score a run again from its config and predictions, and write its report again."""
    return eval_run.rescore(run_dir, overrides, report=write_run_report)
