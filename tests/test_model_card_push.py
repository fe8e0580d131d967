"""Model cards in every exported model directory, and `vaur1 push` through huggingface_hub.

The Hub is not reachable here: `vaur1 push` runs huggingface_hub's real create_repo and create_commit
against tests/fake_hub.py, a local stand-in of the Hub's upload API that accepts every file as a regular
(non-LFS) upload; the LFS/xet transfer of large files on the real Hub is not exercised.
"""

from __future__ import annotations

import os

import pytest
import yaml

from conftest import run_cli
from fake_hub import FakeHub
from train_helpers import sft_config, synth_bench
from vaur1.layout import TrainRun
from vaur1.sft.trainer import train

synth_bench = synth_bench


@pytest.fixture(scope="module")
def trained(tiny_models, synth_bench, tmp_path_factory):
    out = tmp_path_factory.mktemp("card") / "run"
    train(sft_config(out, tiny_models["qwen2_5_vl"], synth_bench))
    return out


def test_every_export_has_a_model_card(trained):
    card = (TrainRun(trained).final / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    assert header["library_name"] == "transformers" and "sft" in header["tags"]
    # the VideoSpec it was trained with, as eval and analyze will read it back
    video = card.split("## Video", 1)[1].split("##", 1)[0]
    assert "2 frames, 784..784 px/frame" in video and "vaur1_video_spec.yaml" in video
    assert "| optim.learning_rate |" in card and "| optimizer steps run | 2 |" in card


@pytest.mark.slow
def test_push_uploads_the_model_with_its_card_and_eval_results(trained, synth_bench, tmp_path, monkeypatch):
    final = TrainRun(trained).final
    eval_dir = tmp_path / "eval"
    evaluated = run_cli(
        "eval",
        "run",
        "--model",
        str(final),
        "--bench",
        str(synth_bench),
        "--split",
        "test",
        "--tasks",
        "qa,tag,cls",
        "--mode",
        "direct",
        "--max-new-tokens",
        "8",
        "--device",
        "cpu",
        "--out",
        str(eval_dir),
        "offline_scorer=false",
    )
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    monkeypatch.setenv("HF_TOKEN", "hf_fake_token_for_the_stand_in")
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("not for the Hub")
    (final / "secret.txt").symlink_to(secret)
    (final / "elsewhere").symlink_to(secret.parent, target_is_directory=True)
    with FakeHub() as hub:
        env_before = dict(os.environ)
        result = run_cli(
            "push", str(trained), "--repo", "me/tiny-vau", "--eval", str(eval_dir), "--endpoint", hub.url
        )
        assert result.returncode == 0, result.stderr[-2000:]
        files = hub.repos["me/tiny-vau"]
        assert {"config.json", "model.safetensors", "README.md", "vaur1_video_spec.yaml"} <= set(files)
        assert files["model.safetensors"] == (final / "model.safetensors").read_bytes()
        card = files["README.md"].decode()
        assert ("## Evaluation" in card and "MSAD" in card) or "SynthVAU" in card
        assert all(auth == "Bearer hf_fake_token_for_the_stand_in" for _, _, auth in hub.requests)
        assert dict(os.environ) == env_before
        # links are never followed: nothing outside the run folder is uploaded, and the skip is said
        assert not any(name.startswith(("secret", "elsewhere")) for name in files)
        assert not any(b"not for the Hub" in content for content in files.values())
        said = " ".join(result.stdout.split())
        assert f"skipped {final / 'secret.txt'}: a link" in said and f"skipped {final / 'elsewhere'}" in said
        # the card names a Hub base model, never a local path
        assert str(trained.parent) not in card and "a local checkpoint" in card
    offline = run_cli("push", str(trained), "--repo", "me/x", "--endpoint", "http://127.0.0.1:9")
    assert offline.returncode == 2 and offline.stderr.count("\n") == 1, offline.stderr
    assert offline.stderr.startswith("error: push to me/x at http://127.0.0.1:9: ")
    (final / "secret.txt").unlink()
    (final / "elsewhere").unlink()
    missing = run_cli("push", str(tmp_path), "--repo", "me/x", "--endpoint", "http://127.0.0.1:9")
    assert missing.returncode == 2 and "no exported model here" in missing.stderr
