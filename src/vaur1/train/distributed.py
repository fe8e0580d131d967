"""What every process of a run does together: sums, gathers, the finite-loss vote, the policy unwrapped
for generation, and leaving a multi-process run (torchrun, `accelerate launch`) without a rank
aborting at exit.

    totals = reduce_sum(accelerator, {"tokens": local_tokens})      # the same dict on every rank
    rows = gather(local_rows)                                       # every rank's list, rank order
    train(cfg); end_distributed_run()                               # under torchrun: does not return
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

import torch

from vaur1.errors import ConfigError


def make_accelerator(gradient_accumulation_steps: int, bf16: bool) -> Any:
    """The run's Accelerator, with the engine `accelerate launch` chose (DDP, DeepSpeed, FSDP).

    Without a GPU, accelerate forms a process group only when told to use the CPU, but `cpu=True`
    silently turns a DeepSpeed or FSDP launch into DDP; so with one of those engines on a CPU the
    Accelerator is created for a device with an explicit gloo group instead.
    """
    import os

    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    on_cpu = not torch.accelerator.is_available()
    engine = any(
        os.environ.get(f"ACCELERATE_USE_{name}", "").lower() == "true" for name in ("DEEPSPEED", "FSDP")
    )
    return Accelerator(
        gradient_accumulation_steps=gradient_accumulation_steps,
        mixed_precision="bf16" if bf16 else "no",
        step_scheduler_with_optimizer=False,
        cpu=on_cpu and not engine,
        kwargs_handlers=[InitProcessGroupKwargs(backend="gloo")] if on_cpu and engine else [],
    )


def configure_deepspeed(accelerator: Any, micro_batch_size: int, max_grad_norm: float | None) -> None:
    """Fill in what DeepSpeed needs before `prepare` and vaur1's training config owns: the micro-batch
    size (accelerate takes it from a dataloader, which vaur1 does not prepare) and gradient clipping."""
    config = accelerator.state.deepspeed_plugin.deepspeed_config
    config["train_micro_batch_size_per_gpu"] = micro_batch_size
    config["train_batch_size"] = (
        micro_batch_size * accelerator.gradient_accumulation_steps * accelerator.num_processes
    )
    config["gradient_clipping"] = max_grad_norm or 0.0


def fsdp_units(model: Any) -> list[str]:
    """The module classes FSDP2 shards as units of their own: the architecture's decoder layers and vision
    blocks (transformers' `_no_split_modules`) and the vision tower itself. As a unit of its own the
    tower gathers its weights when it is called directly, as GRPO does to encode each video once per
    prompt, instead of only inside a forward pass of the whole model."""
    from vaur1.model.load import vision_tower

    return sorted({*model._no_split_modules, type(vision_tower(model)).__name__})


def configure_fsdp(accelerator: Any, model: Any) -> None:
    """Point accelerate's FSDP plugin at the model's units (see `fsdp_units`), for any Qwen-VL
    architecture, whatever the launch config names."""
    plugin = accelerator.state.fsdp_plugin
    if plugin.fsdp_version != 2:
        raise ConfigError("vaur1 supports FSDP through FSDP2: set fsdp_version: 2 in the accelerate config")
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

    plugin.auto_wrap_policy = transformer_auto_wrap_policy
    plugin.transformer_cls_names_to_wrap = fsdp_units(model)


def fsdp_make_root(model: Any, inputs: dict) -> None:
    """Run the sharded model once on `inputs` (on every process, no gradients). FSDP2 makes the first
    unit called the root of its tree, and that must be the whole model: transformers' `generate` and
    GRPO's per-prompt video encoding call the vision tower on its own first."""
    with torch.no_grad():
        model(**inputs, logits_to_keep=1, use_cache=False)


def fsdp_shard_frozen(model: Any, accelerator: Any, inputs: dict) -> Any:
    """Shard a frozen model (GRPO's reference) into the same units as the trained one, children first,
    and make the whole model its root (see `fsdp_make_root`)."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    plugin = accelerator.state.fsdp_plugin
    options = {
        "reshard_after_forward": plugin.reshard_after_forward,
        "mp_policy": plugin.mixed_precision_policy or MixedPrecisionPolicy(),
    }
    units = set(fsdp_units(model))
    for module in reversed(list(model.modules())):
        if type(module).__name__ in units:
            fully_shard(module, **options)
    fully_shard(model, **options)
    model.eval()
    fsdp_make_root(model, inputs)
    return model


def reduce_sum(accelerator: Any, values: dict[str, float]) -> dict[str, float]:
    """Each value summed over all processes (one all-reduce)."""
    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], device=accelerator.device, dtype=torch.float64)
    summed = accelerator.reduce(tensor, reduction="sum").tolist()
    return dict(zip(keys, summed, strict=True))


def gather(values: list) -> list:
    """Every process's list, concatenated in rank order (a copy of `values` on a single process)."""
    from accelerate.utils import gather_object

    return list(gather_object(list(values)))


def broadcast(value: Any, accelerator: Any) -> Any:
    """The main process's `value` on every process."""
    if accelerator.num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value], from_process=0)[0]


def finite_on_all_processes(accelerator: Any, value: torch.Tensor) -> bool:
    """True only if `value` is finite on every process (one small all-gather)."""
    flag = torch.isfinite(value.detach()).all().reshape(1).to(accelerator.device, torch.int32)
    return bool(accelerator.gather(flag).min().item())


def even_shards(items: list, rank: int, world: int) -> tuple[list, int]:
    """(this rank's items, how many of them are padding) with every rank given the same count.

    Rank r takes items r, r + world, ...; a rank left one short repeats its last item (or the list's
    first when it has none), so every process runs the same number of forward passes, which every
    sharded engine needs (ZeRO-3 and FSDP gather parameters collectively). Drop the padding's results.
    """
    if not items:
        return [], 0
    share = -(-len(items) // world)
    mine = items[rank::world]
    padding = share - len(mine)
    filler = mine[-1] if mine else items[0]
    return [*mine, *([filler] * padding)], padding


@contextlib.contextmanager
def policy_for_generation(model: Any, accelerator: Any) -> Iterator[Any]:
    """The prepared model as a plain transformers model to call `generate` on, in the run's mixed
    precision (autocast: trainable weights are fp32). Under ZeRO-3 the parameters are gathered once on
    entry and released on exit: enter it once around all of a cycle's generation, not per call."""
    from accelerate.utils import DistributedType

    with accelerator.autocast():
        if accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP):
            from trl.models.utils import unwrap_model_for_generation

            with unwrap_model_for_generation(
                model, accelerator, gradient_checkpointing_kwargs={"use_reentrant": False}
            ) as unwrapped:
                yield unwrapped
        else:
            yield accelerator.unwrap_model(model)


def end_distributed_run(exit_code: int = 0) -> None:
    """Wait for every rank, destroy the process group and exit the process with `exit_code`.

    Returns at once when no process group is initialized (a single-process run).

    Why the process ends here rather than by returning: after the last collective, gloo's worker
    thread can still hold that collective's work object, whose destructor needs the GIL. If the
    interpreter is already finalizing, that thread is unwound inside a noexcept destructor and the
    rank dies with SIGABRT ("terminate called without an active exception") after all its work is
    saved: 13 of 60 two-process CPU runs on torch 2.13 did, with `destroy_process_group` called.
    So the atexit handlers run and the standard streams are flushed here, and `os._exit` skips the
    interpreter finalization that races with that thread.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    dist.barrier()
    dist.destroy_process_group()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_code)
