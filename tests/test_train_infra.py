"""Training infrastructure: data order, optimizer/scheduler, the bad-step guard, full-state checkpoints
(save/load, kill-and-resume, atomic writes, pruning, Hugging Face export) and the logs."""

from __future__ import annotations

import copy
import itertools
import json
import logging
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from rich.logging import RichHandler

from vaur1.config import from_dict
from vaur1.console import ProgressBar, setup_console_logging
from vaur1.errors import ConfigError, VaurError
from vaur1.layout import TrainRun
from vaur1.train import checkpoint as ckpt
from vaur1.train.checkpoint import (
    TrainerState,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    remove_incomplete,
    resolve_resume,
    save_checkpoint,
)
from vaur1.train.common import (
    BadStepGuard,
    TrainingAborted,
    build_optimizer,
    build_scheduler,
    lr_factor,
    set_seed,
)
from vaur1.train.config import OptimConfig, RunConfig
from vaur1.train.data_order import DataOrder
from vaur1.train.distributed import finite_on_all_processes
from vaur1.train.logging import MetricsLogger

# ---------------------------------------------------------------- data order


def test_data_order_is_a_seeded_permutation_per_epoch():
    order = DataOrder(7, seed=3)
    first, second = order.permutation(0), order.permutation(1)
    assert sorted(first) == sorted(second) == list(range(7)) and first != second
    assert DataOrder(7, seed=3).permutation(0) == first  # a function of (seed, epoch) only
    assert DataOrder(7, seed=4).permutation(0) != first
    assert DataOrder(7, seed=3, shuffle=False).permutation(5) == list(range(7))

    # Batches run across the epoch boundary into the next permutation.
    batches = [order.next_indices(3) for _ in range(4)]
    assert list(itertools.chain(*batches)) == first + second[:5]
    assert (order.epoch, order.position, order.samples_seen) == (1, 5, 12)


def test_data_order_resumes_where_it_stopped_and_refuses_other_data():
    order = DataOrder(10, seed=0)
    order.next_indices(13)
    saved = json.loads(json.dumps(order.state_dict()))
    expected = order.next_indices(9)
    resumed = DataOrder(10, seed=0)
    resumed.load_state_dict(saved)
    assert resumed.next_indices(9) == expected
    with pytest.raises(ConfigError, match="saved with 10 samples, seed 0.*now 11 samples"):
        DataOrder(11, seed=0).load_state_dict(saved)
    with pytest.raises(ConfigError, match="empty"):
        DataOrder(0, seed=0)


# ---------------------------------------------------------------- optimizer, schedule, configs


@pytest.mark.parametrize("kind", ["constant", "linear", "cosine"])
@pytest.mark.parametrize("warmup", [0, 3])
def test_lr_schedule_matches_transformers(kind, warmup):
    from transformers import get_scheduler

    cfg = OptimConfig(learning_rate=1.0, lr_scheduler=kind, warmup_steps=warmup)
    name = "constant_with_warmup" if kind == "constant" else kind
    reference = get_scheduler(name, torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0), warmup, 10)
    for step in range(12):
        assert lr_factor(step, cfg, 10) == pytest.approx(reference.lr_lambdas[0](step), abs=1e-12), step


def test_warmup_ratio_rounds_up_and_scheduler_steps():
    cfg = OptimConfig(learning_rate=0.1, lr_scheduler="linear", warmup_ratio=0.25)
    assert cfg.warmup(10) == 3
    model = torch.nn.Linear(2, 2)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, num_training_steps=10)
    lrs = []
    for _ in range(5):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([0.0, 0.1 / 3, 0.2 / 3, 0.1, 0.1 * 6 / 7])


def test_optimizer_decays_matrices_only_and_skips_frozen_parameters():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    model[2].weight.requires_grad_(False)
    optimizer = build_optimizer(model, OptimConfig(weight_decay=0.1, betas=(0.8, 0.9)))
    decayed, plain = optimizer.param_groups
    assert [p.shape for p in decayed["params"]] == [torch.Size([4, 3])] and decayed["weight_decay"] == 0.1
    assert len(plain["params"]) == 4 and plain["weight_decay"] == 0.0  # 2 biases + norm weight and bias
    assert decayed["betas"] == (0.8, 0.9)
    model.requires_grad_(False)
    with pytest.raises(ConfigError, match="no trainable parameters"):
        build_optimizer(model, OptimConfig())


@pytest.mark.parametrize(
    ("cls", "data", "message"),
    [
        (OptimConfig, {"warmup_steps": 2, "warmup_ratio": 0.1}, "not both"),
        (OptimConfig, {"lr_scheduler": "step"}, "lr_scheduler"),
        (OptimConfig, {"learning_rate": 0}, "learning_rate must be positive"),
        (RunConfig, {"max_bad_steps": 0}, "max_bad_steps"),
        (RunConfig, {"save_total_limit": 0}, "save_total_limit"),
        (RunConfig, {"max_steps": 0}, "max_steps"),
    ],
)
def test_config_validation_names_the_option(cls, data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(cls, data)


def test_set_seed_seeds_every_generator():
    set_seed(5)
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    set_seed(5)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


# ---------------------------------------------------------------- bad-step guard


def test_guard_skips_with_a_warning_and_aborts_after_n_in_a_row(caplog):
    guard = BadStepGuard(max_bad_steps=3)
    with caplog.at_level(logging.WARNING, logger="vaur1"):
        assert guard.check(torch.tensor(1.5), step=1)
        assert not guard.check(torch.tensor(float("nan")), step=2)
        assert not guard.check(float("inf"), step=3)
        assert guard.check(0.3, step=4)  # a good step resets the streak
        assert not guard.check(torch.tensor([1.0, float("nan")]), step=5)
        assert not guard.check(False, step=6)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 4 and "step 2: non-finite loss, skipping the update (1 in a row" in warnings[0]
    restored = BadStepGuard(3)
    restored.load_state_dict(guard.state_dict())
    with pytest.raises(TrainingAborted, match=r"step 7: .* 3 steps in a row \(max_bad_steps=3\)"):
        restored.check(float("nan"), step=7)
    assert restored.total == 5


def fresh_accelerator() -> Accelerator:
    """A new single-process CPU Accelerator, as a new training process would create."""
    AcceleratorState._reset_state(True)
    return Accelerator(cpu=True, step_scheduler_with_optimizer=False)


@pytest.fixture(autouse=True)
def _reset_accelerate_state():
    yield
    AcceleratorState._reset_state(True)


@pytest.fixture
def accelerator() -> Accelerator:
    return fresh_accelerator()


def test_finite_on_all_processes(accelerator):
    assert finite_on_all_processes(accelerator, torch.tensor(2.0))
    assert not finite_on_all_processes(accelerator, torch.tensor([1.0, float("inf")]))


# ---------------------------------------------------------------- checkpoints: a plain torch model


class Run:
    """A small training loop that uses every random stream: dropout and noise (torch), Python's
    `random` and NumPy, plus the data order, AdamW and a linear schedule."""

    def __init__(self, run_dir: Path, seed: int = 0, total_steps: int = 6) -> None:
        set_seed(seed)
        self.accelerator = accelerator = fresh_accelerator()
        self.run_dir = run_dir
        self.total_steps = total_steps
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.3), torch.nn.Linear(8, 1))
        cfg = OptimConfig(learning_rate=0.05, lr_scheduler="linear", weight_decay=0.01)
        optimizer = build_optimizer(model, cfg)
        scheduler = build_scheduler(optimizer, cfg, num_training_steps=total_steps)
        self.model, self.optimizer, self.scheduler = accelerator.prepare(model, optimizer, scheduler)
        generator = torch.Generator().manual_seed(123)  # the data set is fixed, whatever the seed
        self.inputs, self.targets = (
            torch.randn(10, 4, generator=generator),
            torch.randn(10, 1, generator=generator),
        )
        self.state = TrainerState(data=DataOrder(10, seed=7), guard=BadStepGuard(3))

    def step(self) -> None:
        indices = self.state.data.next_indices(3)
        noise = 0.1 * torch.randn(3, 4) * random.random() * float(np.random.rand())
        loss = torch.nn.functional.mse_loss(self.model(self.inputs[indices] + noise), self.targets[indices])
        self.accelerator.backward(loss)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad()
        self.state.step += 1

    def train(self, until: int, save_steps: int | None = None, save_total_limit: int | None = None) -> None:
        while self.state.step < until:
            self.step()
            if save_steps and self.state.step % save_steps == 0:
                save_checkpoint(self.accelerator, self.run_dir, self.state, save_total_limit=save_total_limit)

    def weights(self) -> dict[str, torch.Tensor]:
        return {
            k: v.detach().clone() for k, v in self.accelerator.unwrap_model(self.model).state_dict().items()
        }


def _next_random_numbers() -> tuple:
    return (torch.rand(3).tolist(), random.random(), np.random.rand())


def test_save_then_load_restores_weights_optimizer_schedule_rng_and_data(tmp_path):
    run = Run(tmp_path / "run")
    run.train(until=3)
    run.state.extra["skipped_samples"] = ["msad_12"]
    path = save_checkpoint(run.accelerator, run.run_dir, run.state)
    assert path == tmp_path / "run" / "checkpoint-3"
    weights = run.weights()
    optimizer_state = copy.deepcopy(run.optimizer.state_dict())  # the live one holds references
    lr = run.scheduler.get_last_lr()
    expected_random = _next_random_numbers()

    run.train(until=5)  # move everything on: weights, moments, schedule, RNG and data position
    assert not torch.equal(run.weights()["0.weight"], weights["0.weight"])
    state = load_checkpoint(run.accelerator, path, run.state)

    assert state is run.state and state.step == 3 and state.extra == {"skipped_samples": ["msad_12"]}
    assert (state.data.epoch, state.data.position) == (0, 9)
    assert all(torch.equal(run.weights()[k], v) for k, v in weights.items())
    restored = run.optimizer.state_dict()
    assert restored["state"].keys() == optimizer_state["state"].keys()
    for key, moments in optimizer_state["state"].items():
        assert all(
            torch.equal(restored["state"][key][m], moments[m]) for m in ("exp_avg", "exp_avg_sq", "step")
        )
    assert run.scheduler.get_last_lr() == lr
    assert _next_random_numbers() == expected_random
    trainer_state = json.loads((path / "trainer_state.json").read_text())
    assert trainer_state["step"] == 3 and trainer_state["data"]["position"] == 9


def test_killed_and_resumed_loop_reaches_identical_weights(tmp_path):
    uninterrupted = Run(tmp_path / "a")
    uninterrupted.train(until=6)

    interrupted = Run(tmp_path / "b")
    interrupted.train(until=5, save_steps=2)  # checkpoints 2 and 4; step 5 is lost with the process
    del interrupted

    resumed = Run(tmp_path / "b", seed=99)  # fresh objects, different RNG: all must be restored
    start = resolve_resume("auto", tmp_path / "b")
    assert start == tmp_path / "b" / "checkpoint-4"
    load_checkpoint(resumed.accelerator, start, resumed.state)
    resumed.train(until=6)
    final = resumed.weights()
    assert all(torch.equal(final[k], v) for k, v in uninterrupted.weights().items())


def test_crash_mid_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    run = Run(tmp_path / "run")
    run.train(until=2, save_steps=2)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    run.train(until=4)
    monkeypatch.setattr(ckpt, "write_json", crash)  # dies after the accelerate state, before the rename
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(run.accelerator, run.run_dir, run.state)
    monkeypatch.undo()

    assert (run.run_dir / "checkpoint-4.tmp" / "state").is_dir()  # the half-written save is left behind ...
    assert latest_checkpoint(run.run_dir) == run.run_dir / "checkpoint-2"  # ... and ignored
    assert resolve_resume("auto", run.run_dir) == run.run_dir / "checkpoint-2"
    load_checkpoint(run.accelerator, run.run_dir / "checkpoint-2", run.state)
    assert run.state.step == 2

    run.train(until=4)
    save_checkpoint(run.accelerator, run.run_dir, run.state)  # the next save cleans up the leftover
    assert sorted(p.name for p in run.run_dir.iterdir()) == ["checkpoint-2", "checkpoint-4"]


def test_save_total_limit_and_resaving_a_step(tmp_path):
    run = Run(tmp_path / "run")
    run.train(until=5, save_steps=1, save_total_limit=2)
    assert [p.name for p in list_checkpoints(run.run_dir)] == ["checkpoint-4", "checkpoint-5"]
    (run.run_dir / "checkpoint-5" / "marker").write_text("old")
    save_checkpoint(run.accelerator, run.run_dir, run.state, save_total_limit=2)  # same step again: replaced
    assert not (run.run_dir / "checkpoint-5" / "marker").exists()
    assert sorted(p.name for p in run.run_dir.iterdir()) == ["checkpoint-4", "checkpoint-5"]


def test_resume_resolution(tmp_path):
    run_dir = tmp_path / "run"
    assert resolve_resume("auto", run_dir) is None and resolve_resume("never", run_dir) is None
    for step in (2, 10, 9):
        (run_dir / f"checkpoint-{step}" / "state").mkdir(parents=True)
        (run_dir / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    (run_dir / "checkpoint-11.tmp").mkdir()
    (run_dir / "checkpoint-notes").mkdir()
    assert resolve_resume("auto", run_dir) == run_dir / "checkpoint-10"  # numeric order, leftovers ignored
    assert resolve_resume(str(run_dir / "checkpoint-9"), run_dir) == run_dir / "checkpoint-9"
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        resolve_resume("never", run_dir)
    with pytest.raises(
        ConfigError, match=r"not a vaur1 checkpoint directory \(latest there: .*checkpoint-10\)"
    ):
        resolve_resume(str(run_dir), run_dir)
    assert remove_incomplete(run_dir) == [run_dir / "checkpoint-11.tmp"]
    assert (run_dir / "checkpoint-notes").is_dir()


def test_unreadable_trainer_state_is_named(tmp_path):
    (tmp_path / "checkpoint-1").mkdir()
    (tmp_path / "checkpoint-1" / "trainer_state.json").write_text("{not json")
    run = Run(tmp_path)
    with pytest.raises(VaurError, match=r"checkpoint-1/trainer_state.json: cannot read"):
        load_checkpoint(run.accelerator, tmp_path / "checkpoint-1", run.state)


# ---------------------------------------------------------------- checkpoints: a LoRA transformers model


def tiny_qwen2(seed: int = 0):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=32,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )
    return Qwen2ForCausalLM(config)


def tiny_tokenizer():
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {f"w{i}": i for i in range(32)}
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="w0")), unk_token="w0"
    )


def test_lora_checkpoint_exports_a_merged_hf_model(accelerator, tmp_path):
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.1)
    model = get_peft_model(tiny_qwen2(), lora)
    cfg = OptimConfig(learning_rate=0.02)
    optimizer = build_optimizer(model, cfg)
    model, optimizer = accelerator.prepare(model, optimizer)
    data = torch.randint(1, 32, (6, 8), generator=torch.Generator().manual_seed(0))
    state = TrainerState(data=DataOrder(6, seed=0), guard=BadStepGuard(3))
    for _ in range(3):
        batch = data[state.data.next_indices(2)]
        accelerator.backward(model(input_ids=batch, labels=batch).loss)
        optimizer.step()
        optimizer.zero_grad()
        state.step += 1
    path = save_checkpoint(accelerator, tmp_path, state, model=model, processor=tiny_tokenizer())

    exported = AutoModelForCausalLM.from_pretrained(path / "hf").eval()
    model.eval()
    with torch.no_grad():
        trained, loaded = model(input_ids=data).logits, exported(input_ids=data).logits
        base = model.get_base_model()
        with model.disable_adapter():
            untrained = base(input_ids=data).logits
    # The file holds exactly what a plain save_pretrained of the base architecture holds.
    tiny_qwen2().save_pretrained(tmp_path / "plain")
    assert set(load_file(path / "hf" / "model.safetensors")) == set(
        load_file(tmp_path / "plain" / "model.safetensors")
    )
    assert torch.allclose(loaded, trained, atol=1e-5)
    assert not torch.allclose(loaded, untrained, atol=1e-3)  # the adapter was trained and really merged
    assert AutoTokenizer.from_pretrained(path / "hf").convert_tokens_to_ids("w5") == 5
    assert model.base_model.model.model.layers[0].self_attn.q_proj.merged is False  # training model untouched


# A real kill under two processes: rank 0 SIGKILLs itself after step KILL_AT, torchrun tears the other
# rank down, and running the same command again resumes from the latest checkpoint.
RESUME_SCRIPT = """
import os, random, signal, sys
from pathlib import Path
import vaur1.model  # the torchvision shim, before peft
import numpy as np, torch
from accelerate import Accelerator
from peft import LoraConfig, get_peft_model
sys.path.insert(0, sys.argv[4])
from test_train_infra import tiny_qwen2, tiny_tokenizer
from vaur1.train.checkpoint import TrainerState, load_checkpoint, resolve_resume, save_checkpoint
from vaur1.train.common import BadStepGuard, build_optimizer, build_scheduler, set_seed
from vaur1.train.config import OptimConfig
from vaur1.train.data_order import DataOrder
from vaur1.train.distributed import end_distributed_run

run_dir, total, kill_at = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
accelerator = Accelerator(cpu=True, step_scheduler_with_optimizer=False)
rank, world = accelerator.process_index, accelerator.num_processes
lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.2)
model = get_peft_model(tiny_qwen2(), lora)
set_seed(100 + rank)  # every rank has its own random streams, and each must be restored
cfg = OptimConfig(learning_rate=0.02, lr_scheduler="cosine", warmup_steps=1)
optimizer = build_optimizer(model, cfg)
scheduler = build_scheduler(optimizer, cfg, total)
model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
data = torch.randint(1, 32, (10, 8), generator=torch.Generator().manual_seed(1))
state = TrainerState(data=DataOrder(10, seed=0), guard=BadStepGuard(3))
start = resolve_resume("auto", run_dir)
if start is not None:
    load_checkpoint(accelerator, start, state)
model.train()
while state.step < total:
    batch = data[state.data.next_indices(2 * world)[rank::world]]
    noise = torch.randint(1, 32, batch.shape)
    batch = torch.where(torch.rand(batch.shape) < 0.1 + 0.2 * random.random(), noise, batch)
    loss = model(input_ids=batch, labels=batch).loss * float(np.random.uniform(0.9, 1.1))
    accelerator.backward(loss)
    accelerator.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()
    state.step += 1
    if state.step % 2 == 0:
        save_checkpoint(accelerator, run_dir, state, model=model, processor=tiny_tokenizer(), save_total_limit=2)
    if state.step == kill_at and rank == 0:
        os.kill(os.getpid(), signal.SIGKILL)
if accelerator.is_main_process:
    torch.save(accelerator.unwrap_model(model).state_dict(), run_dir / "final.pt")
end_distributed_run()
"""


@pytest.mark.slow
@pytest.mark.engines
def test_sigkilled_two_process_lora_run_resumes_to_bit_identical_weights(tmp_path):
    from transformers import AutoModelForCausalLM

    script = tmp_path / "train.py"
    script.write_text(RESUME_SCRIPT)
    tests_dir = str(Path(__file__).parent)

    def launch(run_dir: Path, kill_at: int) -> subprocess.CompletedProcess:
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
        command = [*torchrun, str(script), str(run_dir), "7", str(kill_at), tests_dir]
        return subprocess.run(command, capture_output=True, text=True, timeout=300, env=os.environ.copy())

    whole = launch(tmp_path / "whole", kill_at=0)
    assert whole.returncode == 0, whole.stderr[-3000:]
    killed = launch(tmp_path / "killed", kill_at=5)
    # torchrun reports whichever rank it sees fail first: rank 0's SIGKILL, or rank 1 losing its peer.
    assert killed.returncode != 0, killed.stderr[-3000:]
    assert not (tmp_path / "killed" / "final.pt").exists()
    assert [p.name for p in list_checkpoints(tmp_path / "killed")] == ["checkpoint-2", "checkpoint-4"]
    assert sorted(
        p.name for p in (tmp_path / "killed" / "checkpoint-4" / "state").glob("random_states_*")
    ) == [
        "random_states_0.pkl",
        "random_states_1.pkl",
    ]
    resumed = launch(tmp_path / "killed", kill_at=0)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [p.name for p in list_checkpoints(tmp_path / "killed")] == ["checkpoint-4", "checkpoint-6"]

    expected = torch.load(tmp_path / "whole" / "final.pt")
    actual = torch.load(tmp_path / "killed" / "final.pt")
    assert expected.keys() == actual.keys()
    lora_keys = [k for k in expected if "lora_B" in k]
    assert lora_keys and any(expected[k].abs().sum() > 0 for k in lora_keys)  # the adapter did train
    assert all(torch.equal(expected[k], actual[k]) for k in expected)
    AutoModelForCausalLM.from_pretrained(tmp_path / "killed" / "checkpoint-6" / "hf")  # loads for evaluation


# A DDP model's last step, then the end of the run. Before `end_distributed_run`, 13 of 60 such
# two-process runs lost a rank at interpreter exit (SIGABRT: a gloo thread freeing the barrier's work).
END_SCRIPT = """
import atexit, sys
from pathlib import Path
import torch
from accelerate import Accelerator
from vaur1.train.distributed import end_distributed_run

accelerator = Accelerator(cpu=True)
rank = accelerator.process_index
layer = torch.nn.Linear(4, 4)
model, optimizer = accelerator.prepare(layer, torch.optim.SGD(layer.parameters()))
accelerator.backward(model(torch.ones(2, 4)).sum())
atexit.register(lambda: (Path(sys.argv[1]) / f"atexit-{rank}").write_text("ran"))
print(f"rank {rank} done", end="")  # no newline, no flush: the exit must flush it
end_distributed_run(3)
print("unreachable")
"""


@pytest.mark.slow
@pytest.mark.engines
def test_a_two_process_run_ends_with_its_exit_code_its_atexit_handlers_and_its_output(tmp_path):
    script = tmp_path / "end.py"
    script.write_text(END_SCRIPT)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    for attempt in range(6):  # pairs side by side: a loaded CPU made the abort more likely
        runs = [tmp_path / f"run-{attempt}-{i}" for i in range(2)]
        launched = []
        for run in runs:
            run.mkdir()
            command = [*torchrun, str(script), str(run)]
            launched.append(
                subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            )
        for run, process in zip(runs, launched, strict=True):
            out, err = process.communicate(timeout=120)
            assert "terminate called" not in err, err[-3000:]
            assert process.returncode == 1, err[-3000:]  # torchrun: a rank exited non-zero (3, below)
            assert "exitcode  : 3" in err, err[-3000:]
            assert sorted(p.name for p in run.glob("atexit-*")) == ["atexit-0", "atexit-1"]
            assert "rank 0 done" in out and "rank 1 done" in out and "unreachable" not in out


# ---------------------------------------------------------------- logs


def test_metrics_jsonl_lines_are_valid_json(tmp_path):
    with MetricsLogger(TrainRun(tmp_path)) as logger:
        logger.log(1, {"loss": torch.tensor(0.5), "kl": float("nan"), "lr": np.float32(1e-6), "task": "qa"})
        logger.log(2, {"loss": float("inf"), "reward/mean": 1, "per_task": {"tag": float("nan"), "qa": 0.25}})
        logger.log_samples(2, [{"prompt": "Is there an anomaly?", "completion": "<answer>Normal</answer>"}])
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]  # strict JSON: NaN and Infinity would be rejected below
    assert all("NaN" not in line and "Infinity" not in line for line in lines)
    assert [r["step"] for r in records] == [1, 2] and all(isinstance(r["time"], float) for r in records)
    assert records[0]["loss"] == 0.5 and records[0]["kl"] is None and records[0]["lr"] == pytest.approx(1e-6)
    assert records[1]["loss"] is None and records[1]["per_task"] == {"tag": None, "qa": 0.25}
    sample = json.loads((tmp_path / "samples.jsonl").read_text())
    assert sample == {"step": 2, "prompt": "Is there an anomaly?", "completion": "<answer>Normal</answer>"}
    with pytest.raises(TypeError, match="scalar"):
        MetricsLogger(TrainRun(tmp_path / "other")).log(1, {"logits": torch.zeros(3)})


def test_resumed_logger_drops_records_after_the_checkpoint(tmp_path):
    with MetricsLogger(TrainRun(tmp_path)) as logger:
        for step in range(1, 6):
            logger.log(step, {"loss": step})
            logger.log_samples(step, [{"completion": str(step)}])
    with (tmp_path / "metrics.jsonl").open("a") as handle:
        handle.write('{"step": 6, "lo')  # the killed run's last line, cut short
    with MetricsLogger(TrainRun(tmp_path), start_step=3) as logger:
        logger.log(4, {"loss": 40})
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    assert [json.loads(line)["step"] for line in (tmp_path / "samples.jsonl").read_text().splitlines()] == [
        1,
        2,
        3,
    ]


def test_tensorboard_receives_the_numeric_metrics(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with MetricsLogger(TrainRun(tmp_path), report_to=["tensorboard"]) as logger:
        logger.log(1, {"loss": 0.5, "kl": float("nan"), "task": "qa"})
        logger.log(2, {"loss": 0.25})
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert events.Tags()["scalars"] == ["loss"]
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(1, 0.5), (2, 0.25)]


def test_disabled_logger_writes_nothing(tmp_path):
    with MetricsLogger(TrainRun(tmp_path / "rank1"), report_to=["tensorboard"], enabled=False) as logger:
        record = logger.log(1, {"loss": 1.0})
        logger.log_samples(1, [{"completion": "x"}])
    assert record["loss"] == 1.0 and not (tmp_path / "rank1").exists()


def test_progress_bar_shows_steps_and_metrics(capsys):
    with ProgressBar(10, start_step=2, description="grpo") as bar:
        bar.update(3, {"loss": 0.123456, "reward": torch.tensor(0.5)})
    err = capsys.readouterr().err
    assert "grpo" in err and "3/10" in err and "loss 0.1235" in err and "reward 0.5" in err
    assert "step/s" in err
    with ProgressBar(10, description="eval", unit="prompt") as bar:
        bar.update(3)
    err = capsys.readouterr().err
    assert "prompt/s" in err and "step" not in err
    with ProgressBar(10, enabled=False) as bar:
        bar.update(4)
    assert capsys.readouterr().err == ""


def test_console_logging_is_set_up_once_per_process():
    logger = logging.getLogger("vaur1")
    handlers, level = list(logger.handlers), logger.level
    others = [h for h in handlers if not isinstance(h, RichHandler)]  # earlier tests may have set it up
    logger.handlers[:] = others
    try:
        assert setup_console_logging(is_main_process=True) is logger
        setup_console_logging(is_main_process=False)
        assert len(logger.handlers) == len(others) + 1 and logger.level == logging.WARNING
        setup_console_logging(is_main_process=True)
        assert logger.level == logging.INFO
    finally:
        logger.handlers[:] = handlers
        logger.setLevel(level)


def test_a_model_with_nan_weights_is_never_exported(accelerator, tmp_path):
    from vaur1.train.checkpoint import export_hf_model

    model = accelerator.prepare(tiny_qwen2())
    with torch.no_grad():
        accelerator.unwrap_model(model).model.layers[1].mlp.up_proj.weight[0, 0] = float("nan")
    with pytest.raises(
        VaurError, match=r"not exported: the weights hold NaN or inf values \(first: .*up_proj"
    ):
        export_hf_model(accelerator, model, tmp_path / "final")
    assert not (tmp_path / "final").exists()
