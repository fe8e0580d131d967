"""Per-GPU memory of a run, by component and phase, from shapes alone: the maths of `vaur1 plan`.

Everything here is a pure function of a `Workload` (what the model and the config imply) and an
engine. A run's peak is its persistent state (weights, fp32 master weights, optimizer states, the
reference model) plus the largest of its phases:

  generation  GRPO rollouts and evaluation: the KV cache of every sequence, the prefill's
              activations, the vision tower's forward, and under ZeRO-3 the whole policy gathered
              (vaur1 gathers it once per rollout cycle, not once per token);
  reference   GRPO's no-gradient log-prob passes (old and reference policies);
  update      the forward and backward of one micro-batch: gradients, activations (all of them, or
              with gradient checkpointing the layer inputs plus one layer's), the vision tower's,
              the fp32 output-layer block of `vaur1.model.logprobs`, and autocast's bf16 copies of
              fp32 weights.

Activation sizes per token and layer count the tensors a Qwen decoder layer saves for backward
(norm inputs and outputs in fp32, the projections' inputs and outputs, rotary outputs, the SwiGLU
MLP's four intermediate tensors); `benchmarks/full_size_cpu.py` and tests/test_plan.py check the
total against measured peaks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Engine = Literal["ddp", "zero2", "zero3", "zero3_offload", "fsdp"]
ENGINES: tuple[Engine, ...] = ("ddp", "zero2", "zero3", "zero3_offload", "fsdp")
Job = Literal["grpo", "sft", "eval"]

VOCAB_CHUNK = 8192  # vaur1.model.logprobs walks the vocabulary in blocks of this many rows
ADAM_BYTES = 8  # AdamW's two fp32 moments per trainable parameter
FP32 = 4


@dataclass(frozen=True)
class Shapes:
    """The sizes of a model that its memory depends on (from the meta-device model)."""

    parameters: int
    vision_parameters: int
    largest_layer_parameters: int  # the biggest decoder layer or vision block: ZeRO-3/FSDP gather units
    hidden: int
    intermediate: int
    layers: int
    q_dim: int  # heads x head_dim
    kv_dim: int  # key/value heads x head_dim
    vocab: int
    vision_hidden: int
    vision_intermediate: int
    vision_depth: int
    merge: int  # spatial merge: visual tokens are patches / merge^2
    patch_values: int  # numbers per patch in pixel_values (3 x temporal_patch x patch x patch)
    qk_norm: bool  # Qwen3-VL normalises queries and keys (two more saved tensors per layer)
    vision_mlp_tensors: int  # intermediate-width tensors a vision MLP saves: SwiGLU 4, GELU 2


@dataclass(frozen=True)
class Workload:
    """One process's share of a job: the model, what trains, and the sequences it runs."""

    job: Job
    shapes: Shapes
    trainable: int  # parameters with gradients (LoRA: the adapters)
    weight_bytes: int  # bytes per weight as loaded (model.dtype)
    bf16: bool  # autocast compute in bf16
    separate_reference: bool  # GRPO with beta > 0 and no LoRA: a second, frozen model
    gradient_checkpointing: bool
    prompts: int  # prompts per micro-batch (per process)
    samples: int  # sequences per prompt (GRPO's G; 1 otherwise)
    visual_tokens: int  # per video
    text_tokens: int  # per prompt, around the video
    new_tokens: int  # generated (GRPO, eval) or target (SFT) tokens per sequence
    lora: bool
    lora_dropout: bool  # LoRA with dropout keeps a dropped-out copy of each target's input
    padding_mask: bool  # sdpa attention (not flash_attention_2) given a padding mask
    vision_trains: bool  # gradients flow into the vision tower (not frozen, not LoRA without vision targets)
    shared_prefix: bool = False  # GRPO's log-prob passes score each prompt once for its G completions

    @property
    def compute_bytes(self) -> int:
        return 2 if self.bf16 or self.weight_bytes == 2 else FP32

    @property
    def prompt_tokens(self) -> int:
        return self.visual_tokens + self.text_tokens

    @property
    def rows(self) -> int:
        return self.prompts * self.samples

    @property
    def packs_groups(self) -> bool:
        """The shared-prefix layout is in use: it needs the block mask, which flash-attention does not take."""
        return self.shared_prefix and self.padding_mask and self.samples > 1

    @property
    def scored_rows(self) -> int:
        """Rows of the log-prob passes: one per prompt group when it shares its prompt."""
        return self.prompts if self.packs_groups else self.rows

    @property
    def scored_sequence(self) -> int:
        """Tokens per row of the log-prob passes: the prompt, then one or all G completions."""
        return self.prompt_tokens + (self.samples if self.packs_groups else 1) * self.new_tokens

    def trainable_in_fp32(self, engine: Engine) -> bool:
        """vaur1 upcasts trainable bf16/fp16 weights to fp32 where no engine keeps master weights
        (DeepSpeed keeps its own fp32 masters and computes with the bf16 weights)."""
        return self.job != "eval" and self.weight_bytes < FP32 and not engine.startswith("zero")


def _sharded(value: float, gpus: int, sharded: bool) -> int:
    return int(value / gpus) if sharded else int(value)


def persistent(work: Workload, engine: Engine, gpus: int) -> dict[str, int]:
    """What a process holds all run long: weights, master weights, optimizer states, the reference."""
    s = work.shapes
    frozen = s.parameters - (0 if work.lora else work.trainable)
    if work.job == "eval":
        return {"weights": s.parameters * work.weight_bytes}
    deepspeed = engine.startswith("zero")
    shard_weights = engine in ("zero3", "zero3_offload", "fsdp")
    if deepspeed:
        # DeepSpeed keeps the model in its loaded dtype and fp32 masters of what trains
        weights = _sharded(s.parameters * work.weight_bytes, gpus, shard_weights)
        masters = work.trainable * FP32 if work.weight_bytes < FP32 else 0
    else:
        trainable_bytes = FP32 if work.trainable_in_fp32(engine) else work.weight_bytes
        weights = _sharded(frozen * work.weight_bytes + work.trainable * trainable_bytes, gpus, shard_weights)
        masters = 0
    offload = engine == "zero3_offload"  # parameters, masters and optimizer states live in CPU memory
    out = {
        "weights": 0 if offload else weights,
        "master_weights": 0 if offload else _sharded(masters, gpus, deepspeed),
        "optimizer_states": 0 if offload else _sharded(work.trainable * ADAM_BYTES, gpus, engine != "ddp"),
    }
    if work.separate_reference and not offload:
        out["reference"] = _sharded(s.parameters * work.weight_bytes, gpus, shard_weights)
    return out


def element_bytes(work: Workload, engine: Engine, vision: bool = False) -> float:
    """Average bytes of a saved activation element. Measured per layer on a CPU (the fp32 norms of a
    bf16 model keep bf16 activations from halving): fp32 4; bf16 autocast over fp32 weights 2.4
    (plus `autocast_copies`); bf16 weights 3.4 in the language model, 2.6 in the vision tower."""
    if work.compute_bytes == FP32:
        return 4.0
    if work.trainable_in_fp32(engine):
        return 2.4
    return 2.6 if vision else 3.4


def layer_activations(work: Workload, engine: Engine, tokens: int) -> int:
    """Bytes one decoder layer saves for backward over `tokens` tokens: measured on Qwen2.5-VL-3B,
    Qwen3-VL-2B and tiny layers as 1.9 h + 2 q + 4.6 i + 8 kv elements a token (Qwen3-VL's query and
    key norms add q + kv), and LoRA's dropout copies of its targets' inputs 1.1 (5 h + q + i)."""
    s = work.shapes
    elements = 1.9 * s.hidden + 2 * s.q_dim + 4.6 * s.intermediate + 8 * s.kv_dim
    if s.qk_norm:
        elements += s.q_dim + s.kv_dim
    if work.lora_dropout:
        elements += 1.1 * (5 * s.hidden + s.q_dim + s.intermediate)
    return int(tokens * elements * element_bytes(work, engine))


def vision_block_activations(work: Workload, engine: Engine, patches: int) -> int:
    """Bytes one vision block saves for backward over `patches` patches: 14 hidden-width elements a
    patch plus the MLP's intermediate tensors (measured as for `layer_activations`)."""
    s = work.shapes
    elements = 14 * s.vision_hidden + s.vision_mlp_tensors * s.vision_intermediate
    return int(patches * elements * element_bytes(work, engine, vision=True))


def residual_bytes(work: Workload, engine: Engine) -> int:
    """The residual stream's dtype: fp32 where the weights are fp32 (autocast adds in fp32)."""
    return FP32 if work.trainable_in_fp32(engine) or work.weight_bytes == FP32 else 2


def forward_transient(work: Workload, tokens: int) -> int:
    """The largest set of live temporaries of one layer's no-gradient forward (the MLP's)."""
    s = work.shapes
    return tokens * (3 * s.intermediate + 4 * s.hidden) * work.compute_bytes


def video_inputs(work: Workload, videos: int) -> int:
    """pixel_values (fp32) and the vision tower's output tokens for `videos` videos."""
    s = work.shapes
    patches = work.visual_tokens * s.merge**2
    return videos * (patches * s.patch_values * FP32 + work.visual_tokens * s.hidden * work.compute_bytes)


def vision_forward(work: Workload, engine: Engine, videos: int, with_grad: bool) -> int:
    """The vision tower's activations over `videos` videos: saved for backward, or one block's."""
    s = work.shapes
    patches = videos * work.visual_tokens * s.merge**2
    block = vision_block_activations(work, engine, patches)
    if not with_grad:
        return block // 2
    if work.gradient_checkpointing:
        # the blocks' inputs, and one block recomputed at a time in backward
        return s.vision_depth * patches * s.vision_hidden * residual_bytes(work, engine) + block
    # backward holds one block's gradients of its intermediate tensors at a time
    backward = patches * (3 * s.vision_intermediate + 4 * s.vision_hidden) * element_bytes(work, engine, True)
    return s.vision_depth * block + int(backward)


def generation(work: Workload, engine: Engine, gpus: int) -> dict[str, int]:
    """GRPO rollouts and eval: every sequence's KV cache, the prefill, the vision forward."""
    s = work.shapes
    sequence = work.prompt_tokens + work.new_tokens
    cache_bytes = 2 if work.bf16 or work.weight_bytes == 2 else FP32
    out = {
        "kv_cache": work.rows * sequence * s.layers * 2 * s.kv_dim * cache_bytes,
        "inputs": video_inputs(work, work.prompts),
        "visual": vision_forward(work, engine, work.prompts, with_grad=False),
        "activations": forward_transient(work, work.rows * work.prompt_tokens),
        "logits": work.rows * s.vocab * FP32 * 3,
    }
    if work.job == "grpo" and (engine == "zero3_offload" or (engine == "zero3" and gpus > 1)):
        out["gathered_weights"] = s.parameters * work.weight_bytes
    if work.trainable_in_fp32(engine) and work.bf16:
        out["autocast_copies"] = work.trainable * 2  # autocast's bf16 copies of the fp32 weights
    return out


def output_block(work: Workload, rows: int, targets: int) -> int:
    """The fp32 output layer of `vaur1.model.logprobs`: saved hidden states and one vocabulary block."""
    s = work.shapes
    chunk = min(VOCAB_CHUNK, s.vocab)
    return rows * targets * (s.hidden * FP32 + chunk * FP32 * 3)


def reference_pass(work: Workload, engine: Engine) -> dict[str, int]:
    """GRPO's old/reference log-probs: one no-gradient forward over the rollout."""
    tokens = work.scored_rows * work.scored_sequence
    out = {
        "inputs": video_inputs(work, work.prompts),
        "visual": vision_forward(work, engine, work.prompts, with_grad=False),
        "activations": forward_transient(work, tokens),
        "logits": output_block(work, work.rows, work.new_tokens),
    }
    return out


def update(work: Workload, engine: Engine, gpus: int) -> dict[str, int]:
    """One micro-batch's forward and backward, with the gradients it fills."""
    s = work.shapes
    tokens = work.scored_rows * work.scored_sequence
    layer = layer_activations(work, engine, tokens)
    if work.gradient_checkpointing:
        # the layers' inputs, and one layer recomputed at a time in backward
        activations = s.layers * tokens * s.hidden * residual_bytes(work, engine) + layer
    else:
        # backward holds one layer's gradients of its intermediate tensors at a time
        backward = tokens * (3 * s.intermediate + 4 * s.hidden) * element_bytes(work, engine)
        activations = s.layers * layer + int(backward)
    deepspeed = engine.startswith("zero")
    gradient_bytes = FP32 if work.trainable_in_fp32(engine) or work.weight_bytes == FP32 or deepspeed else 2
    gradients = work.trainable * gradient_bytes
    if engine == "ddp" and gpus > 1:
        gradients *= 2  # DDP's reducer buckets hold a second copy
    elif engine in ("zero2", "zero3", "fsdp"):
        gradients = _sharded(gradients, gpus, True)
    elif engine == "zero3_offload":
        gradients = 0
    kept = 1 if work.gradient_checkpointing else s.layers
    if work.packs_groups:
        # the completions' attention keeps, per layer, each completion's copy of the prompt's keys and
        # values and its (L, P + L) mask, which sdpa turns into an additive one
        copies = work.samples * work.prompt_tokens * 2 * s.kv_dim * element_bytes(work, engine)
        masks = work.samples * work.new_tokens * (work.prompt_tokens + work.new_tokens) * work.compute_bytes
        activations += kept * work.prompts * int(copies + masks)
    elif work.padding_mask and work.rows > 1:
        # sdpa turns the boolean padding mask into an additive one in each layer and keeps it for
        # backward: rows x S x S per layer (flash_attention_2 unpads instead and keeps none)
        activations += kept * work.rows * work.scored_sequence**2 * work.compute_bytes
    out = {
        "gradients": gradients,
        "inputs": video_inputs(work, work.prompts),
        "visual": vision_forward(work, engine, work.prompts, with_grad=work.vision_trains),
        "activations": activations,
        "logits": output_block(work, work.rows, work.new_tokens),
    }
    if engine == "zero3_offload" or (engine in ("zero3", "fsdp") and gpus > 1):
        out["gathered_weights"] = (
            2 * s.largest_layer_parameters * work.weight_bytes
        )  # this layer and the next
    if work.trainable_in_fp32(engine) and work.bf16:
        out["autocast_copies"] = work.trainable * 2
    return out


def phases(work: Workload, engine: Engine, gpus: int) -> dict[str, dict[str, int]]:
    """Each phase the job runs, with its own components (persistent state not included)."""
    if work.job == "eval":
        return {"generation": generation(work, engine, gpus)}
    out = {"update": update(work, engine, gpus)}
    if work.job == "grpo":
        out = {"generation": generation(work, engine, gpus), "reference": reference_pass(work, engine), **out}
    return out


@dataclass(frozen=True)
class Estimate:
    engine: Engine
    gpus: int
    persistent: dict[str, int]
    peak_phase: str
    phase: dict[str, int]  # the peak phase's components

    @property
    def total(self) -> int:
        return sum(self.persistent.values()) + sum(self.phase.values())

    def breakdown(self) -> dict[str, int]:
        """Every component at the peak, and `total`."""
        merged: dict[str, int] = dict(self.persistent)
        for key, value in self.phase.items():
            merged[key] = merged.get(key, 0) + value
        return {**merged, "total": self.total}


def estimate(work: Workload, engine: Engine, gpus: int) -> Estimate:
    """The per-process peak of `work` under `engine` on `gpus` processes."""
    state = persistent(work, engine, gpus)
    runs = phases(work, engine, gpus)
    peak = max(runs, key=lambda name: sum(runs[name].values()))
    return Estimate(engine=engine, gpus=gpus, persistent=state, peak_phase=peak, phase=runs[peak])
