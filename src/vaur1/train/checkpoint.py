"""Full-state checkpoints: everything a run needs to continue exactly, written atomically.

Layout of `<output_dir>/checkpoint-<step>/`:

    state/               Accelerator.save_state: model (or DeepSpeed/FSDP shards), optimizer, scheduler,
                         RNG states of every process (random_states_<rank>.pkl), registered objects;
                         beside them, <name>.safetensors of a run's extra weights (a mixed reference)
    trainer_state.json   step, data order position, bad-step counters, loop extras (TrainerState)
    hf/                  the model for evaluation, loadable with `from_pretrained`: a full model, with any
                         LoRA adapter merged into its weights, plus the processor or tokenizer

The directory is written as `checkpoint-<step>.tmp/` and renamed when complete, so a crash mid-save
leaves the previous checkpoints untouched; leftovers are ignored by `latest_checkpoint` and removed
by the next save. Every process must call `save_checkpoint` and `load_checkpoint` (they synchronise),
and the output directory must be shared between processes.

    resume_from = resolve_resume(cfg.run.resume, cfg.run.output_dir)
    if resume_from:
        load_checkpoint(accelerator, resume_from, state)
    ...
    save_checkpoint(accelerator, cfg.run.output_dir, state, model=model, processor=processor,
                    save_total_limit=cfg.run.save_total_limit)
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vaur1.config import read_yaml, shown, to_dict
from vaur1.errors import ConfigError, VaurError
from vaur1.files import file_sha256, replace_dir, write_json
from vaur1.layout import Checkpoint, TrainRun, checkpoint_step
from vaur1.train.common import BadStepGuard
from vaur1.train.data_order import DataOrder
from vaur1.train.distributed import broadcast

log = logging.getLogger("vaur1.train")


@dataclass
class TrainerState:
    """The loop's own state, saved next to the accelerate state as JSON.

    `extra` holds any other JSON-serialisable counters a loop keeps (e.g. the ids of skipped samples).
    """

    data: DataOrder
    guard: BadStepGuard
    step: int = 0
    elapsed_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "elapsed_seconds": self.elapsed_seconds,
            "data": self.data.state_dict(),
            "guard": self.guard.state_dict(),
            "extra": self.extra,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.elapsed_seconds = float(state["elapsed_seconds"])
        self.data.load_state_dict(state["data"])
        self.guard.load_state_dict(state["guard"])
        self.extra = dict(state["extra"])


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints in `run_dir`, oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [p for p in run_dir.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=lambda p: checkpoint_step(p) or 0)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    checkpoints = list_checkpoints(run_dir)
    return checkpoints[-1] if checkpoints else None


def resume_files(checkpoint: Checkpoint) -> list[Path]:
    """Every file a resume reads: the accelerate state (weights, optimizer, scheduler, RNG states)
    and the trainer state."""
    return [*sorted(p for p in checkpoint.state.rglob("*") if p.is_file()), checkpoint.trainer_state]


def write_checksums(checkpoint: Checkpoint) -> None:
    write_json(
        checkpoint.checksums,
        {str(p.relative_to(checkpoint.root)): file_sha256(p) for p in resume_files(checkpoint)},
    )


def corrupt_file(checkpoint_dir: str | Path) -> str | None:
    """Why `checkpoint_dir` cannot be resumed from (the first file missing, truncated or changed since
    it was saved), or None when every file matches its checksum. A checkpoint written before vaur1
    kept checksums is taken as it is."""
    checkpoint = Checkpoint(Path(checkpoint_dir))
    if not checkpoint.checksums.is_file():
        return None
    try:
        expected = json.loads(checkpoint.checksums.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return f"{checkpoint.checksums}: unreadable ({err})"
    for name, digest in expected.items():
        path = checkpoint.root / name
        try:
            actual = file_sha256(path)
        except OSError as err:
            return f"{path}: {err.strerror}"
        if actual != digest:
            return f"{path}: its content differs from the checksum saved with it (truncated or changed)"
    return None


def resolve_resume(resume: str, run_dir: str | Path) -> Path | None:
    """Which checkpoint to start from: "auto" -> the latest complete one in `run_dir` whose files match
    their checksums (or none), "never" -> none (and `run_dir` must not hold checkpoints already),
    anything else -> that checkpoint directory, which must be intact."""
    if resume == "auto":
        for candidate in reversed(list_checkpoints(run_dir)):
            problem = corrupt_file(candidate)
            if problem is None:
                return candidate
            log.warning("not resuming from %s: %s; trying the one before", candidate.name, problem)
        return None
    if resume == "never":
        existing = latest_checkpoint(run_dir)
        if existing is not None:
            raise ConfigError(
                f"{run_dir} already holds checkpoints ({existing.name}); pass resume=auto to continue "
                "that run, or choose another output_dir"
            )
        return None
    path = Path(resume)
    checkpoint = Checkpoint(path)
    if not checkpoint.trainer_state.is_file() or not checkpoint.state.is_dir():
        inside = latest_checkpoint(path)
        hint = f" (latest there: {inside})" if inside else ""
        raise ConfigError(f"resume={resume}: not a vaur1 checkpoint directory{hint}")
    problem = corrupt_file(path)
    if problem is not None:
        raise VaurError(f"resume={resume}: cannot resume: {problem}")
    return path


def remove_incomplete(run_dir: str | Path) -> list[Path]:
    """Delete leftovers of interrupted saves (`checkpoint-*.tmp`, `checkpoint-*.stale`); main process only."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    leftovers = [
        p
        for p in run_dir.iterdir()
        if p.is_dir() and p.suffix in (".tmp", ".stale") and checkpoint_step(p.with_suffix("")) is not None
    ]
    for path in leftovers:
        shutil.rmtree(path)
    return leftovers


def save_checkpoint(
    accelerator: Any,
    run_dir: str | Path,
    state: TrainerState,
    *,
    model: Any = None,
    processor: Any = None,
    save_total_limit: int | None = None,
    export_dtype: torch.dtype | None = None,
    extra_states: dict[str, dict[str, torch.Tensor]] | None = None,
) -> Path:
    """Write `run_dir/checkpoint-<state.step>/` atomically and prune to `save_total_limit` checkpoints.

    `model` (the prepared model) is exported under `hf/` when given, in `export_dtype`; it must be a
    transformers model or a PEFT model around one. `extra_states` (name -> tensors, alike on every
    process) are written by the main process beside the accelerate state. Call on every process.
    """
    run_dir = Path(run_dir)
    final = TrainRun(run_dir).checkpoint(state.step).root
    tmp = final.with_name(final.name + ".tmp")
    staged = Checkpoint(tmp)
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        remove_incomplete(run_dir)
        tmp.mkdir()
    accelerator.wait_for_everyone()

    accelerator.save_state(str(staged.state))
    if accelerator.is_main_process:
        from safetensors.torch import save_file

        for name, tensors in (extra_states or {}).items():
            save_file(tensors, staged.extra_state(name))
    if model is not None:
        export_hf_model(accelerator, model, staged.hf, processor=processor, dtype=export_dtype)
    if accelerator.is_main_process:
        write_json(staged.trainer_state, state.state_dict())
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_checksums(staged)

    if accelerator.is_main_process:
        replace_dir(tmp, final)
        if save_total_limit is not None:
            for old in list_checkpoints(run_dir)[:-save_total_limit]:
                shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator: Any, checkpoint_dir: str | Path, state: TrainerState) -> TrainerState:
    """Restore model, optimizer, scheduler, RNG states and registered objects, then `state` in place.

    The prepared objects and registrations must match those of the run that saved it. Call on
    every process.
    """
    checkpoint = Checkpoint(Path(checkpoint_dir))
    state_file = checkpoint.trainer_state
    try:
        saved = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise VaurError(f"{state_file}: cannot read the trainer state: {err}") from None
    accelerator.load_state(str(checkpoint.state))
    state.load_state_dict(saved)
    return state


def export_hf_model(
    accelerator: Any, model: Any, out_dir: str | Path, processor: Any = None, dtype: torch.dtype | None = None
) -> Path:
    """Save `model` with `save_pretrained` so it loads for evaluation with `from_pretrained`.

    `dtype`: the floating-point weights are written in it (the dtype the checkpoint was loaded in,
    when training held the trainable weights in fp32); None writes them as they are.

    A PEFT model is saved as its base model with the LoRA deltas added to the weights (the training
    model itself is left unmerged). The full state dict is gathered first, which also works under
    DeepSpeed ZeRO-3 (with `stage3_gather_16bit_weights_on_model_save`) and FSDP. Call on every process.
    """
    out_dir = Path(out_dir)
    unwrapped = accelerator.unwrap_model(model)
    state_dict = accelerator.get_state_dict(model)
    # the last line of defence behind the NaN guard: a model with NaN or inf weights is never written
    broken = None
    if accelerator.is_main_process:
        broken = next(
            (k for k, v in state_dict.items() if v.is_floating_point() and not torch.isfinite(v).all()), None
        )
    broken = broadcast(broken, accelerator)
    if broken is not None:
        raise VaurError(f"{out_dir}: not exported: the weights hold NaN or inf values (first: {broken})")
    if not accelerator.is_main_process:
        return out_dir
    if _is_peft_model(unwrapped):
        target = unwrapped.get_base_model()
        state_dict = merge_lora_state_dict(unwrapped, state_dict)
    else:
        target = unwrapped
    if dtype is not None:
        state_dict = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state_dict.items()}
    if not hasattr(target, "save_pretrained"):
        raise VaurError(f"cannot export {type(target).__name__} as a Hugging Face model (no save_pretrained)")
    target.save_pretrained(out_dir, state_dict=state_dict, safe_serialization=True)
    _write_config_dtype(out_dir / "config.json", state_dict)
    if processor is not None:
        processor.save_pretrained(out_dir)
    return out_dir


def _write_config_dtype(config_file: Path, state_dict: dict[str, torch.Tensor]) -> None:
    """config.json names the dtype the floating-point weights were written in.

    save_pretrained writes the model's config, whose dtype is that of the weights training held (fp32
    when the loaded dtype was bf16), so `dtype="auto"` would load a bf16 export in fp32 at twice the
    memory, and vLLM and transformers would disagree on it.
    """
    floating = [v.dtype for v in state_dict.values() if v.is_floating_point()]
    if not floating:
        return
    written = str(max(set(floating), key=floating.count)).removeprefix("torch.")

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: written if k in ("dtype", "torch_dtype") else rewrite(v) for k, v in node.items()}
        return node

    config = json.loads(config_file.read_text(encoding="utf-8"))
    write_json(config_file, {**rewrite(config), "dtype": written})


def _is_peft_model(model: Any) -> bool:
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


def merge_lora_state_dict(peft_model: Any, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The base model's state dict with W + scaling * B @ A in place of every LoRA-wrapped linear layer.

    `state_dict` is the PEFT model's full state dict (keys under `base_model.model.`); the result has
    the base model's own key names. Only plain LoRA on linear layers with one active adapter is
    supported: anything else raises rather than export a model that differs from the trained one.
    """
    from peft.tuners.lora import Linear as LoraLinear
    from peft.tuners.lora import LoraLayer

    adapters = list(peft_model.active_adapters)
    if len(adapters) != 1:
        raise VaurError(f"cannot merge {len(adapters)} active adapters into one model: {adapters}")
    adapter = adapters[0]
    prefix = "base_model.model."
    merged: dict[str, torch.Tensor] = {}
    lora_modules = {}
    for name, module in peft_model.named_modules():
        if isinstance(module, LoraLayer):
            if not isinstance(module, LoraLinear) or module.use_dora.get(adapter, False):
                raise VaurError(f"{name}: only plain LoRA on linear layers can be merged for export")
            lora_modules[name] = module
    for key, tensor in state_dict.items():
        if ".lora_" in key or ".original_module." in key:
            continue
        merged[_base_key(key, prefix, adapter)] = tensor
    for name, module in lora_modules.items():
        weight_key = f"{name}.base_layer.weight"
        lora_a = state_dict[f"{name}.lora_A.{adapter}.weight"].float()
        lora_b = state_dict[f"{name}.lora_B.{adapter}.weight"].float()
        delta = (lora_b @ lora_a) * module.scaling[adapter]
        if module.fan_in_fan_out:
            delta = delta.T
        weight = state_dict[weight_key]
        merged[_base_key(weight_key, prefix, adapter)] = (weight.float() + delta).to(weight.dtype)
    return merged


def _base_key(key: str, prefix: str, adapter: str) -> str:
    key = key.removeprefix(prefix)
    return key.replace(".base_layer.", ".").replace(f".modules_to_save.{adapter}.", ".")


# Settings a resumed run may change: where and how often it logs and saves, how long it runs, how it
# reads data and validates. Anything else (the optimizer, the data, the model, the rewards) shapes the
# training already done, and the checkpoint's optimizer and schedule would silently keep the old values.
RESUME_MAY_CHANGE = ("run.", "loader.", "cache.", "validation.")
RESUME_MUST_KEEP = ("run.seed",)


def check_resumed_config(run: TrainRun, cfg: Any) -> None:
    """Refuse a resume whose config changes a setting that the saved run trained with."""
    if not run.config.is_file():
        return
    saved = _flat(read_yaml(run.config))
    current = _flat(json.loads(json.dumps(to_dict(cfg))))
    for key in sorted(saved.keys() | current.keys()):
        if key.startswith(RESUME_MAY_CHANGE) and key not in RESUME_MUST_KEEP:
            continue
        if saved.get(key) != current.get(key):
            raise ConfigError(
                f"resume: {key} was {shown(saved.get(key))} in {run.config}, now {shown(current.get(key))}; "
                "a resumed run keeps its training settings (use another run.output_dir, or run.resume=never "
                "there, to train with the new one)"
            )


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix.rstrip("."): data}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat |= _flat(value, f"{prefix}{key}.")
    return flat
