"""The code's shape as a contract: no import circles (function-level and type-only imports counted),
a session assembled from parts, and each task and metric name written only by its owner."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "vaur1"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _owner(name: str, modules: dict[str, Path]) -> str | None:
    """The vaur1 module `name` is, or is inside (`vaur1.eval.run.score_run` -> `vaur1.eval.run`)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """module -> the vaur1 modules it imports anywhere: at the top, in a function, under TYPE_CHECKING."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets = [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                owner = _owner(target, modules) if target.startswith("vaur1") else None
                if owner is not None and owner != name:
                    graph[name].add(owner)
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each a circle of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for node in graph:
        if node not in index:
            visit(node)
    return circles


def test_no_module_imports_one_that_imports_it_back() -> None:
    graph = import_graph()
    assert "vaur1.train.session" in graph["vaur1.train.build"]  # the walk sees imports at all
    assert import_circles(graph) == []


def test_the_circle_check_finds_a_circle_through_a_function_level_import() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_circles(graph) == [["a", "b", "c"]]
    assert import_circles({"a": {"b"}, "b": set()}) == []


def _function(path: Path, cls: str, name: str) -> ast.FunctionDef:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == name:
                    return item
    pytest.fail(f"{cls}.{name} not found in {path}")


def test_a_session_runs_on_parts_built_elsewhere() -> None:
    init = _function(PACKAGE / "train" / "session.py", "Session", "__init__")
    assert init.end_lineno - init.lineno + 1 < 40
    assert [arg.arg for arg in init.args.args] == ["self", "parts"]


def _owned_names() -> set[str]:
    """Every task, metric key, metric name and score name, the state words and the backends: the
    names `vaur1.vocab` owns."""
    from vaur1 import vocab

    return {
        *vocab.TASKS,
        *(metric.key for metric in vocab.METRICS),
        *vocab.METRICS_BY_NAME,
        *vocab.SCORES,
        vocab.ANOMALY,
        vocab.NORMAL,
        *vocab.BACKENDS,
    }


# Literals that spell an owned word but name something else, each with what it names.
OTHER_MEANINGS: dict[str, set[str]] = {
    "rewards.py": {"accuracy"},  # the accuracy reward's own name (`REWARDS`), which scores QA and TAG
    "rl/temporal.py": {"accuracy"},  # the same reward, by name
    "bench/datasets_io.py": {"reasoning"},  # the Hub dataset's column of chain-of-thought fields
    "bench/__init__.py": {"hf"},  # `data.bench: hf` names the Hub copy of VAU-Bench, not a backend
    "model/generators.py": {"vllm"},  # the vllm package, looked up before it is imported
    "model/vllm_engine.py": {"vllm"},  # vLLM's own generation_config value
    "layout.py": {"hf"},  # a checkpoint's hf/ folder
}


def literal_names(path: Path, names: set[str]) -> list[tuple[int, str]]:
    """(line, text) of each string constant in `path` that is one of `names`; docstrings and the
    arguments of `Literal[...]` (a type spells its values) are not code that uses a name."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    spelled: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            spelled.add(id(body[0].value))
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Name)
            and node.value.id == "Literal"
        ):
            spelled.update(id(inner) for inner in ast.walk(node.slice))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value in names and id(node) not in spelled
    ]


def test_task_and_metric_names_are_written_only_by_their_owner() -> None:
    names = _owned_names()
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative == "vocab.py":
            continue
        allowed = OTHER_MEANINGS.get(relative, set())
        found += [
            f"{relative}:{line}: {text!r}" for line, text in literal_names(path, names) if text not in allowed
        ]
    assert found == []


def test_the_literal_check_sees_a_name_in_code_and_not_in_a_docstring(tmp_path: Path) -> None:
    source = tmp_path / "sample.py"
    source.write_text(
        '"""Scores tag answers."""\nfrom typing import Literal\n'
        'Kind = Literal["tag"]\n\n\ndef f(task):\n    """tag"""\n    return task == "tag"\n'
    )
    assert literal_names(source, {"tag"}) == [(8, "tag")]


def test_every_scored_task_has_its_functions() -> None:
    """Adding a task is one `TASK_SPECS` entry and its functions: each named part must exist."""
    from vaur1 import vocab
    from vaur1.eval import metrics, paired
    from vaur1.prompts import PLACEHOLDERS
    from vaur1.rewards import REWARD_TASKS, REWARDS

    for name, spec in vocab.TASK_SPECS.items():
        assert name in PLACEHOLDERS
        assert set(spec.rewards) <= set(REWARDS)
        assert all(name in REWARD_TASKS[reward] for reward in spec.rewards)
        if spec.scored:
            assert set(spec.item_fields) <= {field.name for field in dataclasses.fields(metrics.SampleScore)}
            assert spec.headline in {metric.key for metric in spec.metrics}
            assert metrics.BASELINES[name] == spec.baselines
            scored = metrics.summarize(name, [], resamples=1)
            assert {metric.key for metric in spec.metrics} <= set(scored)
    per_item = {metric for metric in vocab.METRICS_BY_NAME if metric in paired.PER_ITEM}
    assert per_item == set(vocab.METRICS_BY_NAME) - {"cls.macro_f1"}  # an F1 is no mean of items
