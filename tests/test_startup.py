"""The CLI and the data tools start at once: they load neither torch nor transformers."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "transformers", "accelerate", "av", "matplotlib")


def loaded_after(code: str) -> set[str]:
    """The heavy modules in sys.modules after running `code` in a fresh interpreter."""
    check = f"{code}\nimport sys; print('LOADED', *(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return set(result.stdout.rsplit("LOADED", 1)[1].split())


def test_importing_the_parser_loads_no_torch():
    modules = "vaur1, vaur1.parse, vaur1.rewards, vaur1.prompts, vaur1.vocab, vaur1.layout, vaur1.bench, vaur1.config"
    assert loaded_after(f"import {modules}") == set()


def test_the_help_and_config_list_load_neither_torch_nor_transformers():
    assert loaded_after("from vaur1.cli import build_parser; build_parser().format_help()") == set()
    assert loaded_after("from vaur1.cli import main; main(['config', 'list'])") == set()


def test_data_stats_of_the_released_csvs_loads_neither_torch_nor_transformers(shared_bench):
    stats = (
        f"from vaur1.cli import main; assert main(['data', 'stats', {str(shared_bench)!r}, '--json']) == 0"
    )
    assert loaded_after(stats) == set()
