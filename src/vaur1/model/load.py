"""Loading Qwen2-VL, Qwen2.5-VL and Qwen3-VL checkpoints, LoRA, and the vision tower.

    model, processor = load_model(ModelConfig(name_or_path="Qwen/Qwen2.5-VL-3B-Instruct"))

Everything goes through `AutoModelForImageTextToText` / `AutoProcessor`: a tiny model built by
`vaur1 model tiny`, a downloaded checkpoint, a fine-tuned run and a LoRA adapter directory all
load by the same code. A local path is never looked up on the Hub.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import SafetensorError

from vaur1.errors import ConfigError, VaurError
from vaur1.model.rope import use_reference_positions
from vaur1.vocab import ARCHS

Dtype = Literal["float32", "bfloat16", "float16", "auto"]
AttnImplementation = Literal["auto", "sdpa", "eager", "flash_attention_2"]
log = logging.getLogger("vaur1.model")

DTYPES: dict[str, torch.dtype | str] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "auto": "auto",
}

# The language model's attention and MLP projections. The vision towers name theirs differently
# (qkv, proj, fc1/fc2, linear_fc1/2) except Qwen2.5-VL's MLP (gate/up/down_proj), which is why
# targets are matched outside the vision tower only, never by bare suffix.
LANGUAGE_PROJECTIONS: tuple[str, ...] = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)


@dataclass
class LoraConfig:
    enabled: bool = False  # train LoRA adapters instead of the full model
    r: int = 16  # rank of each adapter
    alpha: int = 32  # the adapters' scale is alpha / r
    dropout: float = 0.05  # dropout on the adapters' input
    # Leaf names of linear layers in the language model that get adapters.
    target_modules: list[str] = field(default_factory=lambda: list(LANGUAGE_PROJECTIONS))
    # Leaf names of linear layers inside the vision tower that get adapters (none by default),
    # e.g. ["qkv", "proj"] for the vision attention of all three architectures.
    vision_target_modules: list[str] = field(default_factory=list)

    def validate(self) -> None:
        if self.r < 1:
            raise ConfigError(f"lora.r must be at least 1, got {self.r}")
        if self.alpha <= 0:
            raise ConfigError(f"lora.alpha must be positive, got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"lora.dropout must be in [0, 1), got {self.dropout}")
        if self.enabled and not (self.target_modules or self.vision_target_modules):
            raise ConfigError("lora.target_modules and lora.vision_target_modules are both empty")
        for name in [*self.target_modules, *self.vision_target_modules]:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ConfigError(f"lora target {name!r} must be a module's leaf name, like q_proj")


@dataclass
class ModelConfig:
    name_or_path: str = ""  # a local directory or a Hugging Face Hub id
    dtype: Dtype = "auto"  # "auto": the checkpoint's own dtype
    # auto: flash_attention_2 where flash-attn is installed, a GPU present and the dtype bf16/fp16,
    # else sdpa (the run log says which); or name one: sdpa, eager, flash_attention_2
    attn_implementation: AttnImplementation = "auto"
    device: str | None = None  # the whole model on one device; None: cuda if available, else cpu
    device_map: str | None = None  # e.g. "auto" to spread a large model over GPUs (instead of device)
    freeze_vision: bool = False  # no gradients into the vision tower (patch embed, blocks, merger)
    gradient_checkpointing: bool = False  # inference configs only; training sets it at the top level
    lora: LoraConfig = field(default_factory=LoraConfig)

    def validate(self) -> None:
        if not self.name_or_path:
            raise ConfigError("model.name_or_path is empty: give a checkpoint directory or a Hub id")
        if self.dtype not in DTYPES:
            raise ConfigError(f"model.dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        if self.attn_implementation not in ("auto", "sdpa", "eager", "flash_attention_2"):
            raise ConfigError(
                f"model.attn_implementation {self.attn_implementation!r} is not auto, sdpa, eager or "
                "flash_attention_2"
            )
        if self.attn_implementation == "flash_attention_2" and self.dtype == "float32":
            raise ConfigError("model.attn_implementation flash_attention_2 needs dtype bfloat16 or float16")
        if self.device is not None and self.device_map is not None:
            raise ConfigError("set model.device or model.device_map, not both")
        check_device(self.device)
        if self.freeze_vision and self.lora.enabled and self.lora.vision_target_modules:
            raise ConfigError("model.freeze_vision contradicts lora.vision_target_modules; choose one")
        self.lora.validate()


def check_device(device: str | None, where: str = "model.device") -> None:
    """ConfigError, before any loading, for a device this machine's torch cannot use."""
    if device is None:
        return
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(f"{where} {device!r} is not a device (e.g. cpu, cuda, cuda:1)") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"{where} {device!r}: this torch ({torch.__version__}) sees no CUDA GPU; use cpu"
            )
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ConfigError(f"{where} {device!r}: there are {torch.cuda.device_count()} CUDA GPUs")
    elif parsed.type not in ("cpu", "meta") and not getattr(torch, parsed.type, None):
        raise ConfigError(f"{where} {device!r}: this torch has no {parsed.type} backend")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{where} {device!r}: MPS is not available here; use cpu")


@dataclass(frozen=True)
class Checkpoint:
    """Where a checkpoint lives: the full model, and the LoRA adapter on top of it if any."""

    model: str  # directory or Hub id of the full model
    local: bool
    adapter: Path | None = None


def resolve_checkpoint(name_or_path: str) -> Checkpoint:
    """Classify `name_or_path`; a local directory must hold a model or a LoRA adapter."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        if (path / "config.json").is_file():
            return Checkpoint(str(path), local=True)
        adapter_file = path / "adapter_config.json"
        if adapter_file.is_file():
            try:
                base = json.loads(adapter_file.read_text(encoding="utf-8")).get("base_model_name_or_path")
            except (OSError, ValueError) as err:
                raise VaurError(f"{adapter_file}: cannot read the adapter config: {err}") from None
            if not base:
                raise VaurError(f"{adapter_file}: no base_model_name_or_path to load the adapter onto")
            base_checkpoint = resolve_checkpoint(base)
            return Checkpoint(base_checkpoint.model, base_checkpoint.local, adapter=path)
        raise VaurError(f"{path}: not a model checkpoint (no config.json or adapter_config.json)")
    if _looks_local(name_or_path):
        raise VaurError(f"{name_or_path}: no such checkpoint directory")
    return Checkpoint(name_or_path, local=False)


def check_qwen_vl(config, where: str) -> str:
    """The model type of a Qwen-VL config, or a clear error naming the checkpoint."""
    model_type = getattr(config, "model_type", None)
    if model_type not in ARCHS:
        raise VaurError(
            f"{where}: a {model_type} checkpoint, not Qwen2-VL, Qwen2.5-VL or Qwen3-VL ({', '.join(ARCHS)})"
        )
    return model_type


def hide_transformers_progress() -> None:
    """transformers' loading and download bars would break into vaur1's own progress bars."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def load_config_of(name_or_path: str):
    """The transformers config of a Qwen-VL checkpoint (for an adapter: of its base model)."""
    from transformers import AutoConfig

    checkpoint = resolve_checkpoint(name_or_path)
    try:
        config = AutoConfig.from_pretrained(checkpoint.model, local_files_only=checkpoint.local)
    except (OSError, ValueError, KeyError) as err:
        where = (
            checkpoint.model
            if checkpoint.local
            else f"{checkpoint.model} (no such local directory; Hub lookup)"
        )
        raise VaurError(f"{where}: cannot read the model config: {_first_line(err)}") from None
    check_qwen_vl(config, checkpoint.model)
    return config


_SAFETENSORS_DTYPES = {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}


def _dtype_name(value: Any) -> str | None:
    name = str(value).removeprefix("torch.") if value is not None else None
    return name if name in ("float32", "bfloat16", "float16") else None


def _weights_dtype(model_dir: Path) -> str | None:
    """The dtype of the first floating-point tensor in a local checkpoint's safetensors files."""
    from safetensors import safe_open

    for file in sorted(model_dir.glob("*.safetensors")):
        try:
            with safe_open(str(file), framework="pt") as handle:
                names = handle.keys()  # a safetensors handle is not iterable itself
                for key in names:
                    name = _SAFETENSORS_DTYPES.get(handle.get_slice(key).get_dtype())
                    if name is not None:
                        return name
        except (OSError, ValueError, SafetensorError) as err:
            raise VaurError(f"{file}: cannot read the weights: {_first_line(err)}") from None
    return None


def resolve_dtype(requested: str, name_or_path: str) -> str:
    """The dtype a model is loaded in, one rule for transformers and vLLM alike (float32, bfloat16 or
    float16), logged.

    "auto" means the checkpoint's own dtype: config.json's `dtype` (`torch_dtype` in older files), else
    its weights'. Each backend's own "auto" would differ: vLLM runs an fp32 checkpoint in bf16 while
    transformers keeps fp32, and greedy outputs then part at the first bf16 tie.
    """
    if requested != "auto":
        log.info("dtype: %s (model.dtype)", requested)
        return requested
    config = load_config_of(name_or_path)
    declared = _dtype_name(getattr(config, "dtype", None) or getattr(config, "torch_dtype", None))
    if declared is not None:
        log.info("dtype: %s (auto: the checkpoint's config.json)", declared)
        return declared
    checkpoint = resolve_checkpoint(name_or_path)
    weights = _weights_dtype(Path(checkpoint.model)) if checkpoint.local else None
    if weights is not None:
        log.info("dtype: %s (auto: the checkpoint's weights; config.json names none)", weights)
        return weights
    log.info("dtype: float32 (auto: the checkpoint names no dtype)")
    return "float32"


def attention_for(cfg: ModelConfig, dtype: torch.dtype | None) -> tuple[str, str]:
    """(the attention implementation to load, why): `model.attn_implementation` resolved for "auto".

    flash-attn's kernels are the fastest on GPUs for long video prompts and what the official VAU-R1
    runs used; they need CUDA and bf16/fp16 weights. sdpa is PyTorch's own fused attention everywhere.
    """
    import importlib.util

    if cfg.attn_implementation != "auto":
        return cfg.attn_implementation, "as configured"
    if importlib.util.find_spec("flash_attn") is None:
        return "sdpa", "flash-attn is not installed"
    if not torch.cuda.is_available():
        return "sdpa", "no CUDA device"
    if dtype not in (torch.bfloat16, torch.float16):
        return "sdpa", f"flash_attention_2 needs bf16 or fp16 weights, not {dtype}"
    return "flash_attention_2", "flash-attn is installed"


def load_model(cfg: ModelConfig):
    """(model, processor) for `cfg`: dtype, attention, device, frozen vision tower, LoRA applied.

    The model is returned in eval mode. A LoRA adapter directory loads onto its base model; its
    adapters are trainable when `cfg.lora.enabled`, frozen otherwise.
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    cfg.validate()
    checkpoint = resolve_checkpoint(cfg.name_or_path)
    dtype = DTYPES[resolve_dtype(cfg.dtype, cfg.name_or_path)]
    attention, why = attention_for(cfg, dtype)  # type: ignore[arg-type]
    log.info("attention: %s (%s)", attention, why)
    try:
        model = AutoModelForImageTextToText.from_pretrained(
            checkpoint.model,
            dtype=dtype,
            attn_implementation=attention,
            device_map=cfg.device_map,
            local_files_only=checkpoint.local,
        )
        processor_source = checkpoint.model
        if checkpoint.adapter is not None and (checkpoint.adapter / "processor_config.json").is_file():
            processor_source = str(checkpoint.adapter)
        processor = AutoProcessor.from_pretrained(
            processor_source, local_files_only=checkpoint.local or processor_source != checkpoint.model
        )
    except (OSError, ValueError, ImportError, SafetensorError) as err:
        raise VaurError(f"{cfg.name_or_path}: cannot load the model: {_first_line(err)}") from None
    # save_pretrained reverts the key renamings the load applied. Loading under DeepSpeed ZeRO-3,
    # transformers 5.23 keeps every candidate renaming instead of only those the checkpoint used,
    # and the revert then writes keys such as model.model.layers.0... that other tools cannot read.
    conversions = getattr(model, "_weight_conversions", None)
    if conversions:
        model._weight_conversions = [c for c in conversions if c.was_used()]
    # text after a video continues where the checkpoints were trained to expect it (vaur1.model.rope)
    use_reference_positions(model)
    if not hasattr(processor, "video_processor"):
        raise VaurError(
            f"{cfg.name_or_path}: the processor {type(processor).__name__} has no video processor"
        )
    if cfg.device_map is None:
        model.to(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if cfg.gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:  # transformers < 5.23 (the vllm extra's 5.20) has only the older name
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.freeze_vision:
        freeze_vision_tower(model)
    if checkpoint.adapter is not None:
        model = _load_adapter(model, checkpoint.adapter, trainable=cfg.lora.enabled)
    elif cfg.lora.enabled:
        model = apply_lora(model, cfg.lora)
    model.eval()  # PEFT leaves the model in train mode; trainers switch explicitly
    return model, processor


def vision_tower(model) -> torch.nn.Module:
    """The vision encoder (patch embedding, blocks and merger) of a plain or PEFT-wrapped model."""
    base = _unwrap(model)
    inner = getattr(base, "model", None)
    tower = getattr(inner, "visual", None)
    if not isinstance(tower, torch.nn.Module):
        raise VaurError(f"{type(base).__name__} has no vision tower at .model.visual; is it a Qwen-VL model?")
    return tower


def vision_tower_prefix(model) -> str:
    """The vision tower's module name inside the transformers model, e.g. `model.visual`."""
    tower = vision_tower(model)
    for name, module in _unwrap(model).named_modules():
        if module is tower:
            return name
    raise VaurError("the vision tower is not a submodule of the model")


def freeze_vision_tower(model) -> None:
    """No gradients into the vision tower; the language model is untouched."""
    for parameter in vision_tower(model).parameters():
        parameter.requires_grad_(False)


def lora_target_pattern(model, lora: LoraConfig) -> str:
    """A regex PEFT matches against full module names: `target_modules` outside the vision tower,
    `vision_target_modules` inside it."""
    prefix = re.escape(vision_tower_prefix(model))
    parts = []
    if lora.target_modules:
        leaves = "|".join(re.escape(name) for name in lora.target_modules)
        parts.append(rf"(?!{prefix}\.).*\.(?:{leaves})")
    if lora.vision_target_modules:
        leaves = "|".join(re.escape(name) for name in lora.vision_target_modules)
        parts.append(rf"{prefix}\..*\.(?:{leaves})")
    return "|".join(f"(?:{part})" for part in parts)


def lora_target_names(model, lora: LoraConfig) -> list[str]:
    """The linear layers `apply_lora` puts adapters on."""
    pattern = re.compile(lora_target_pattern(model, lora))
    return [
        name
        for name, module in _unwrap(model).named_modules()
        if isinstance(module, torch.nn.Linear) and pattern.fullmatch(name)
    ]


def apply_lora(model, lora: LoraConfig):
    """Wrap `model` in PEFT LoRA; only the adapters are trainable afterwards."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    lora.validate()
    targets = lora_target_names(model, lora)
    if not targets:
        wanted = [*lora.target_modules, *lora.vision_target_modules]
        raise VaurError(f"LoRA targets {wanted} match no linear layer of {type(_unwrap(model)).__name__}")
    peft_config = PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora_target_pattern(model, lora),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, peft_config)


@dataclass(frozen=True)
class ParameterCounts:
    total: int
    trainable: int
    vision: int

    @property
    def text(self) -> int:
        return self.total - self.vision


def count_parameters(model) -> ParameterCounts:
    """Parameters of the model (LoRA adapters included), the trainable ones, and the vision tower's."""
    parameters = list(model.parameters())
    return ParameterCounts(
        total=sum(p.numel() for p in parameters),
        trainable=sum(p.numel() for p in parameters if p.requires_grad),
        vision=sum(p.numel() for p in vision_tower(model).parameters()),
    )


def _load_adapter(model, adapter: Path, trainable: bool):
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(model, str(adapter), is_trainable=trainable)
    except (OSError, ValueError) as err:
        raise VaurError(f"{adapter}: cannot load the LoRA adapter: {_first_line(err)}") from None


def _unwrap(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _looks_local(name_or_path: str) -> bool:
    """Hub ids look like `org/name`; anything else that does not exist is a missing local path."""
    return name_or_path.startswith((".", "/", "~")) or "\\" in name_or_path or name_or_path.count("/") != 1


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
