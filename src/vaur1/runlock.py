"""A run folder belongs to one job at a time, and to one kind of job for its whole life.

    with claim_run("runs/eval/grpo-3b", "eval"):     # a VaurError at once if another job holds it
        ...

Two jobs writing one folder mix their files (one `eval run`'s config.yaml beside another's predictions;
two trainers' shards in one checkpoint), and an evaluation written into a training run overwrites the
config.yaml and run_info.json its resume reads. So every job that writes a run folder takes an
exclusive lock on it (`fcntl.flock`, released by the kernel when the process dies, so a killed job
never leaves a stale lock) before it reads or writes anything there, and the folder records the
kind of job that made it; a job of another kind is refused.
"""

from __future__ import annotations

import fcntl
from pathlib import Path
from types import TracebackType
from typing import IO, Literal

from vaur1.errors import VaurError
from vaur1.layout import CHECKPOINT_PATTERN, CONFIG, RUN_INFO, DemoRun, EvalRun, TrainRun

RunKind = Literal["train", "eval", "demo"]
KIND_FILE = ".vaur1-run"  # the kind of job that made the folder, one word
LOCK_FILE = ".vaur1.lock"
# what a run writes before it can be told apart: a folder holding only these is a run that stopped early
# (the demo records each stage in the stage's own folder first)
_RUN_START_FILES = frozenset(
    {
        KIND_FILE,
        LOCK_FILE,
        CONFIG,
        RUN_INFO,
        EvalRun(".").lock.name,
        DemoRun(".").stage_record(".").name,
        DemoRun(".").stage_started(".").name,
    }
)


def exclusive_lock(path: Path, busy: str) -> IO[str]:
    """An open handle holding an exclusive lock on `path`; VaurError `busy` when another holds it."""
    try:
        handle = path.open("a")
    except OSError as err:
        raise VaurError(f"{path}: cannot lock: {err.strerror}") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise VaurError(busy) from None
    return handle


def unlock(handle: IO[str]) -> None:
    if not handle.closed:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def run_kind(root: str | Path) -> str | None:
    """The kind of job a folder belongs to: its record, or, for a folder written before there was one,
    what it holds; None for a new or empty folder."""
    root = Path(root)
    recorded = root / KIND_FILE
    if recorded.is_file():
        return recorded.read_text(encoding="utf-8").strip() or None
    if not root.is_dir():
        return None
    if (root / "demo.yaml").is_file():
        return "demo"
    train = TrainRun(root)
    if (
        train.metrics.is_file()
        or train.final.is_dir()
        or any(CHECKPOINT_PATTERN.match(p.name) for p in root.iterdir() if p.is_dir())
    ):
        return "train"
    if EvalRun(root).predictions.is_file():
        return "eval"
    return None


class RunClaim:
    """The lock on one run folder, held until `release` (or the end of a `with` block)."""

    def __init__(self, root: str | Path, kind: RunKind) -> None:
        self.root = Path(root)
        found = run_kind(self.root)
        if found not in (None, kind):
            raise VaurError(
                f"{self.root}: the folder of a {found} run, not of this {kind} job; give it a folder of its own"
            )
        if found is None and self.root.is_dir():
            foreign = sorted(p.name for p in self.root.iterdir() if p.name not in _RUN_START_FILES)
            if foreign:
                raise VaurError(
                    f"{self.root}: holds {foreign[0]!r} and is no vaur1 run folder; give an empty or new folder"
                )
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise VaurError(f"{self.root}: cannot use this folder: {err.strerror}") from None
        self._handle = exclusive_lock(
            self.root / LOCK_FILE,
            f"{self.root}: another vaur1 job is using this folder; wait for it to end, or give another folder",
        )
        (self.root / KIND_FILE).write_text(f"{kind}\n", encoding="utf-8")

    def release(self) -> None:
        unlock(self._handle)

    def __enter__(self) -> RunClaim:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def claim_run(root: str | Path, kind: RunKind) -> RunClaim:
    """Lock `root` for a job of `kind` (creating it); VaurError naming the folder when another job
    holds it or it belongs to another kind of job."""
    return RunClaim(root, kind)
