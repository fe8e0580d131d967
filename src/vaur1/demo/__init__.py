"""`vaur1 demo`: the whole VAU-R1 pipeline on a CPU, from no data to the comparison table.

    report = run_demo(load_demo_config(quick=False, overrides=["seed=1"]))

`config` holds the settings and the trainer and evaluation configs the demo writes; `pipeline` the
stages and how finished ones are reused; `report` the comparison table and the report files.
"""

from vaur1.demo.config import DemoConfig, eval_config, grpo_train_config, load_demo_config, sft_train_config
from vaur1.demo.pipeline import STAGES, run_demo, stage_hash

__all__ = [
    "STAGES",
    "DemoConfig",
    "eval_config",
    "grpo_train_config",
    "load_demo_config",
    "run_demo",
    "sft_train_config",
    "stage_hash",
]
