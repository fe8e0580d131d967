"""TRL's flat option names as aliases of vaur1's keys, for the command line and for config files.

    vaur1 train grpo --config qwen2_5_vl_3b/tag --learning_rate 1e-6 --num_train_epochs 2 --use_peft
    vaur1 train sft --config my_trl_sft.yaml            # a TRL SFTConfig/GRPOConfig-style flat YAML

A TRL user's flags and YAML keys map onto vaur1's nested keys (`--learning_rate` is
`optim.learning_rate=`); `key=value` overrides keep working next to them. In a config file the TRL
keys vaur1 has no counterpart for (e.g. `logging_dir`, `ddp_timeout`) are left out and listed in a
warning, never silently: vaur1's own unknown keys stay errors.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from vaur1.config import load_yaml_text
from vaur1.errors import ConfigError

log = logging.getLogger("vaur1.train")

# TRL / transformers TrainingArguments name -> vaur1's dotted key
TRL_ALIASES: dict[str, str] = {
    "model_name_or_path": "model.name_or_path",
    "dtype": "model.dtype",
    "torch_dtype": "model.dtype",
    "attn_implementation": "model.attn_implementation",
    "use_peft": "model.lora.enabled",
    "lora_r": "model.lora.r",
    "lora_alpha": "model.lora.alpha",
    "lora_dropout": "model.lora.dropout",
    "lora_target_modules": "model.lora.target_modules",
    "freeze_vision_tower": "model.freeze_vision",
    "learning_rate": "optim.learning_rate",
    "weight_decay": "optim.weight_decay",
    "adam_epsilon": "optim.eps",
    "max_grad_norm": "optim.max_grad_norm",
    "lr_scheduler_type": "optim.lr_scheduler",
    "warmup_steps": "optim.warmup_steps",
    "warmup_ratio": "optim.warmup_ratio",
    "output_dir": "run.output_dir",
    "seed": "run.seed",
    "max_steps": "run.max_steps",
    "num_train_epochs": "run.num_epochs",
    "save_steps": "run.save_steps",
    "save_total_limit": "run.save_total_limit",
    "logging_steps": "run.logging_steps",
    "report_to": "run.report_to",
    "resume_from_checkpoint": "run.resume",
    "eval_steps": "validation.eval_steps",
    "beta": "loss.beta",
    "epsilon": "loss.epsilon",
    "epsilon_high": "loss.epsilon_high",
    "loss_type": "loss.loss_type",
    "scale_rewards": "loss.scale_rewards",
    "num_iterations": "loss.num_iterations",
    "mask_truncated_completions": "loss.mask_truncated_completions",
    "vllm_importance_sampling_correction": "loss.vllm_importance_sampling_correction",
    "vllm_importance_sampling_mode": "loss.vllm_importance_sampling_mode",
    "vllm_importance_sampling_clip_max": "loss.vllm_importance_sampling_clip_max",
    "vllm_importance_sampling_clip_min": "loss.vllm_importance_sampling_clip_min",
    "vllm_importance_sampling_cap": "loss.vllm_importance_sampling_cap",
    "vllm_gpu_memory_utilization": "rollout.vllm.gpu_memory_utilization",
    "vllm_tensor_parallel_size": "rollout.vllm.tensor_parallel_size",
    "vllm_max_model_length": "rollout.vllm.max_model_len",
    "temperature": "sampling.temperature",
    "top_p": "sampling.top_p",
    "top_k": "sampling.top_k",
    "repetition_penalty": "sampling.repetition_penalty",
}
# TRL's use_vllm is a switch of the rollout backend
BACKEND_SWITCH = "use_vllm"


def _value(text: str) -> Any:
    """A flag's value as YAML would read it (JSON first, so that lists like ["q_proj"] work)."""
    try:
        return json.loads(text)
    except ValueError:
        return load_yaml_text(text)


def translate_flags(arguments: list[str], top_level: set[str]) -> list[str]:
    """`--learning_rate 1e-6` -> `optim.learning_rate=1e-6`; `--bf16` -> `bf16=true`; other arguments
    pass through. `top_level` are the config's own top-level fields, flags of their own name."""
    out: list[str] = []
    index = 0
    while index < len(arguments):
        argument = arguments[index]
        index += 1
        name, _, inline = argument[2:].partition("=")
        name = name.replace("-", "_") if argument.startswith("--") else ""
        known = name in TRL_ALIASES or name in top_level or name == BACKEND_SWITCH
        if not argument.startswith("--") or not known or name == "config":
            out.append(argument)
            continue
        if inline:
            value = inline
        elif index < len(arguments) and not arguments[index].startswith("--") and "=" not in arguments[index]:
            value, index = arguments[index], index + 1
        else:
            value = "true"  # a bare flag: TRL's booleans (--bf16, --use_peft, --gradient_checkpointing)
        out.append(_assignment(name, value))
    return out


def _assignment(name: str, value: str) -> str:
    if name == BACKEND_SWITCH:
        return f"rollout.backend={'vllm' if _value(value) else 'hf'}"
    if name == "report_to":
        # TRL takes one name, a comma-separated list or a list
        parsed = _value(value)
        names = (
            parsed if isinstance(parsed, list) else [n.strip() for n in str(parsed).split(",") if n.strip()]
        )
        return f"run.report_to={json.dumps(names)}"
    return f"{TRL_ALIASES.get(name, name)}={value}"


def translate_config(data: dict[str, Any], top_level: set[str]) -> dict[str, Any]:
    """A config dict with TRL's flat keys moved to vaur1's nested ones; TRL keys without a counterpart
    removed and named in one warning. vaur1's own keys win over a TRL alias of the same setting."""
    from vaur1.config import apply_overrides, has_dotted

    trl_keys = set(trl_field_names())
    moved: list[str] = []
    dropped: list[str] = []
    kept = {}
    for key, value in data.items():
        if key in top_level or key in ("base",):
            kept[key] = value
        elif key in TRL_ALIASES or key == BACKEND_SWITCH:
            moved.append(_assignment(key, json.dumps(value)))
        elif key in trl_keys:
            dropped.append(key)
        else:
            kept[key] = value  # an unknown key: from_dict reports it
    if dropped:
        log.warning("TRL settings vaur1 has no counterpart for, left out: %s", ", ".join(sorted(dropped)))
    result = dict(kept)
    for assignment in moved:
        dotted = assignment.split("=", 1)[0]
        if has_dotted(kept, dotted):
            raise ConfigError(f"{dotted} is set twice: as {dotted} and by its TRL name; keep one")
        result = apply_overrides(result, [assignment])
    return result


def trl_field_names() -> list[str]:
    """Every field of TRL's GRPOConfig and SFTConfig (TrainingArguments included)."""
    import dataclasses

    from trl import GRPOConfig, SFTConfig

    return sorted({f.name for cls in (GRPOConfig, SFTConfig) for f in dataclasses.fields(cls)})


def top_level_fields(cls: type) -> set[str]:
    import dataclasses

    return {f.name for f in dataclasses.fields(cls)}


def load_training_config(cls: type, path: str | None, overrides: list[str]):
    """`cls` (GRPOTrainConfig or SFTTrainConfig) from a vaur1 or TRL-style file, then the overrides."""
    from vaur1.config import apply_overrides, config_data, from_dict

    top = top_level_fields(cls)
    rest = list(overrides)
    # `--config` after a TRL flag lands among the overrides (argparse's remainder)
    if "--config" in rest:
        at = rest.index("--config")
        if at + 1 >= len(rest) or path is not None:
            raise ConfigError("--config: give one config file")
        path, rest = rest[at + 1], rest[:at] + rest[at + 2 :]
    data = translate_config(config_data(path), top) if path is not None else {}
    return from_dict(cls, apply_overrides(data, translate_flags(rest, top)))
