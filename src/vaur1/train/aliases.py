"""TRL's flat option names as aliases of vaur1's keys, for the command line and for config files.

    vaur1 train grpo --config qwen2_5_vl_3b/tag --learning_rate 1e-6 --num_train_epochs 2 --use_peft
    vaur1 train sft --config my_trl_sft.yaml            # a TRL SFTConfig/GRPOConfig-style flat YAML

A TRL user's flags and YAML keys map onto vaur1's nested keys (`--learning_rate` is
`optim.learning_rate=`); `key=value` overrides keep working next to them. Nothing that changes the
training is ever dropped: a TRL key or flag vaur1 does not implement (e.g. `importance_sampling_level:
sequence`) is an error that names it, unless its value is TRL's default; only keys about logging,
saving, the Hub, launch and kernels (e.g. `logging_dir`, `ddp_timeout`) are left out, listed in a
warning. vaur1's own unknown keys stay errors.
"""

from __future__ import annotations

import functools
import json
import logging
from typing import Any

from vaur1.config import load_yaml_text
from vaur1.errors import ConfigError
from vaur1.vocab import HF, VLLM

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
    "delta": "loss.delta",
    "importance_sampling_level": "loss.importance_sampling_level",
    "use_bias_correction_kl": "loss.use_bias_correction_kl",
    "sync_ref_model": "loss.sync_ref_model",
    "ref_model_mixup_alpha": "loss.ref_model_mixup_alpha",
    "ref_model_sync_steps": "loss.ref_model_sync_steps",
    "sapo_temperature_pos": "loss.sapo_temperature_pos",
    "sapo_temperature_neg": "loss.sapo_temperature_neg",
    "vespo_k_pos": "loss.vespo_k_pos",
    "vespo_lambda_pos": "loss.vespo_lambda_pos",
    "vespo_k_neg": "loss.vespo_k_neg",
    "vespo_lambda_neg": "loss.vespo_lambda_neg",
    "top_entropy_quantile": "loss.top_entropy_quantile",
    "entropy_coef": "loss.entropy_coef",
    "use_adaptive_entropy": "loss.use_adaptive_entropy",
    "entropy_coef_delta": "loss.entropy_coef_delta",
    "entropy_coef_min": "loss.entropy_coef_min",
    "entropy_coef_max": "loss.entropy_coef_max",
    "entropy_target": "loss.entropy_target",
    "off_policy_mask_threshold": "loss.off_policy_mask_threshold",
    "multi_objective_aggregation": "rewards.multi_objective_aggregation",
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

# The top-level settings GRPO has and SFT has not: an alias of one of them is GRPO's alone.
GRPO_ONLY: frozenset[str] = frozenset(
    {
        "loss",
        "rollout",
        "sampling",
        "rewards",
        "num_generations",
        "max_completion_length",
        "seed_rollouts_per_prompt",
        "shared_prefix",
    }
)


def aliases_of(trainer: str) -> dict[str, str]:
    """The TRL aliases `vaur1 train <trainer>` takes (grpo: all; sft: those of settings SFT has)."""
    if trainer == "grpo":
        return dict(TRL_ALIASES)
    return {flag: key for flag, key in TRL_ALIASES.items() if key.split(".")[0] not in GRPO_ONLY}


# TRL keys about logging, saving, the Hub, evaluation during training, data loading, launch and kernels:
# vaur1 has its own ways for these, and leaving them out changes no update. They are skipped with one
# warning that lists them. Every other TRL key vaur1 does not implement changes the algorithm (a loss,
# a sampler, an optimizer, the data): set to anything but TRL's default, it is an error that names it.
INFRASTRUCTURE_KEYS: frozenset[str] = frozenset(
    {
        "accelerator_config", "activation_checkpointing", "activation_checkpointing_kwargs",
        "activation_offloading", "auto_find_batch_size", "batch_eval_metrics", "bf16_full_eval",
        "cache_implementation", "dataloader_drop_last", "dataloader_in_order",
        "dataloader_multiprocessing_context", "dataloader_num_workers", "dataloader_persistent_workers",
        "dataloader_pin_memory", "dataloader_prefetch_factor", "dataset_kwargs", "dataset_num_proc",
        "ddp_backend", "ddp_broadcast_buffers", "ddp_bucket_cap_mb", "ddp_find_unused_parameters",
        "ddp_static_graph", "ddp_timeout", "debug", "deepspeed", "disable_tqdm", "do_eval", "do_predict",
        "do_train", "ds3_gather_for_generation", "enable_jit_checkpoint", "eval_accumulation_steps",
        "eval_delay", "eval_do_concat_batches", "eval_on_start", "eval_packing", "eval_strategy",
        "eval_use_gather_object", "fp16_full_eval", "fsdp", "fsdp_config", "full_determinism",
        "gradient_checkpointing_kwargs", "greater_is_better", "hub_always_push", "hub_model_id",
        "hub_private_repo", "hub_revision", "hub_strategy", "hub_token", "ignore_data_skip",
        "include_for_metrics", "include_num_input_tokens_seen", "label_names", "length_column_name",
        "liger_kernel_config", "load_best_model_at_end", "local_rank", "log_completions",
        "log_completions_hub_repo", "log_level", "log_level_replica", "log_multimodal", "log_on_each_node",
        "log_unique_prompts", "logging_dir", "logging_first_step", "logging_nan_inf_filter",
        "logging_strategy", "metric_for_best_model", "model_init_kwargs", "num_completions_to_print",
        "num_generations_eval", "overwrite_output_dir", "padding_free", "pad_to_multiple_of",
        "parallelism_config", "per_device_eval_batch_size", "prediction_loss_only", "project",
        "push_to_hub", "remove_unused_columns", "restore_callback_states_from_checkpoint", "run_name",
        "save_on_each_node", "save_only_model", "save_safetensors", "save_strategy", "skip_memory_metrics",
        "tf32", "torch_compile", "torch_compile_backend", "torch_compile_mode", "torch_empty_cache_steps",
        "trackio_bucket_id", "trackio_space_id", "trackio_static_space_id",
        "transformers_continuous_batching_config", "trust_remote_code", "use_cache", "use_cpu",
        "use_liger_kernel", "use_transformers_continuous_batching", "use_transformers_paged",
        "vllm_enable_sleep_mode", "vllm_group_port", "vllm_model_impl", "vllm_server_host",
        "vllm_server_port", "vllm_server_timeout",
    }
)  # fmt: skip


@functools.cache
def trl_defaults() -> dict[str, Any]:
    """Each field of TRL's GRPOConfig and SFTConfig with its default (the GRPO one where both have it)."""
    import dataclasses

    from trl import GRPOConfig, SFTConfig

    defaults: dict[str, Any] = {}
    for cls in (SFTConfig, GRPOConfig):
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                defaults[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                defaults[f.name] = f.default_factory()
            else:
                defaults[f.name] = None
    return defaults


def unimplemented(key: str, value: Any, where: str) -> str | None:
    """None when a TRL key vaur1 lacks may be skipped (infrastructure, or its value is TRL's default);
    else the one-line error that names it."""
    if key in INFRASTRUCTURE_KEYS or value == trl_defaults().get(key, value):
        return None
    return (
        f"{where}{key}={value!r}: a TRL setting vaur1 does not implement, and it changes the training; "
        "remove it (vaur1 config show grpo|sft lists what vaur1 has)"
    )


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
        trl_only = not known and name in trl_defaults()
        if not argument.startswith("--") or not (known or trl_only) or name == "config":
            out.append(argument)
            continue
        if inline:
            value = inline
        elif index < len(arguments) and not arguments[index].startswith("--") and "=" not in arguments[index]:
            value, index = arguments[index], index + 1
        else:
            value = "true"  # a bare flag: TRL's booleans (--bf16, --use_peft, --gradient_checkpointing)
        if trl_only:
            refused = unimplemented(name, _value(value), "--")
            if refused is not None:
                raise ConfigError(refused)
            log.warning("TRL flag vaur1 has no counterpart for, left out: --%s", name)
            continue
        check_alias(name, top_level)
        out.append(_assignment(name, value))
    return out


def check_alias(name: str, top_level: set[str]) -> None:
    """A TRL alias of a setting this trainer lacks (`--beta` for SFT) is an error, not a late one."""
    target = "rollout.backend" if name == BACKEND_SWITCH else TRL_ALIASES.get(name)
    if target is not None and target.split(".")[0] not in top_level:
        raise ConfigError(f"{name} ({target}) is a GRPO setting; SFT has no {target}")


def _assignment(name: str, value: str) -> str:
    if name == BACKEND_SWITCH:
        return f"rollout.backend={VLLM if _value(value) else HF}"
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

    trl_keys = set(trl_defaults())
    moved: list[str] = []
    dropped: list[str] = []
    kept = {}
    for key, value in data.items():
        if key in top_level or key in ("base",):
            kept[key] = value
        elif key in TRL_ALIASES or key == BACKEND_SWITCH:
            check_alias(key, top_level)
            moved.append(_assignment(key, json.dumps(value)))
        elif key in trl_keys:
            refused = unimplemented(key, value, "")
            if refused is not None:
                raise ConfigError(refused)
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
