"""`vaur1 push RUN_DIR --repo ID`: a trained model, its card and its VideoSpec, to the Hugging Face Hub."""

from __future__ import annotations

import argparse
import os
import stat
from pathlib import Path

from vaur1.console import output_console


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "push",
        help="upload a trained model (final/ or best/) with its model card to the Hugging Face Hub",
        description="Refresh the model card (with evaluation results in the paper's layout when --eval runs "
        "are given), then upload the model directory with huggingface_hub. The token comes from HF_TOKEN or "
        "`hf auth login`.",
    )
    parser.add_argument("run_dir", type=Path, help="a training run directory")
    parser.add_argument("--repo", required=True, help="the Hub repository, e.g. me/qwen2.5-vl-3b-vau-grpo")
    parser.add_argument(
        "--model", choices=("final", "best"), default="final", help="which export (default final)"
    )
    parser.add_argument(
        "--eval", type=Path, action="append", default=[], metavar="EVAL_RUN", help="repeatable"
    )
    parser.add_argument("--private", action="store_true", help="create the repository private")
    parser.add_argument(
        "--endpoint", help="a Hub endpoint other than huggingface.co (HF_ENDPOINT also works)"
    )
    parser.add_argument("--message", default="Upload model trained with vaur1", help="commit message")
    parser.set_defaults(func=run_push)


def run_push(args: argparse.Namespace) -> int:
    import httpx2  # huggingface_hub's HTTP client: its connection errors are no OSErrors
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    from vaur1.errors import VaurError
    from vaur1.layout import TrainRun
    from vaur1.train.card import write_model_card

    run = TrainRun(args.run_dir)
    model_dir = run.final if args.model == "final" else run.best
    if not (model_dir / "config.json").is_file():
        raise VaurError(f"{model_dir}: no exported model here (config.json missing)")
    write_model_card(model_dir, run.root, args.eval)
    api = HfApi(endpoint=args.endpoint)
    files, links = upload_files(model_dir)
    console = output_console(highlight=False, soft_wrap=True)
    for link in links:
        console.print(
            f"[yellow]skipped[/] {link}: a link (only regular files inside {model_dir} are uploaded)"
        )
    operations = [
        CommitOperationAdd(path_in_repo=path.relative_to(model_dir).as_posix(), path_or_fileobj=str(path))
        for path in files
    ]
    try:
        url = api.create_repo(args.repo, private=args.private, exist_ok=True)
        commit = api.create_commit(args.repo, operations, commit_message=args.message)
    except (OSError, HfHubHTTPError, httpx2.HTTPError) as err:  # refused, unreachable, or the Hub said no
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise VaurError(f"push to {args.repo} at {api.endpoint}: {first}") from None
    console.print(f"pushed {len(files)} files of {model_dir} to {url} ({commit.oid[:12]})")
    return 0


def upload_files(model_dir: Path) -> tuple[list[Path], list[Path]]:
    """(the regular files under `model_dir`, the links skipped): a link is never followed, so nothing
    outside the run folder is read, whatever a link in it points at."""
    files: list[Path] = []
    links: list[Path] = []
    for root, folders, names in os.walk(model_dir, followlinks=False):
        here = Path(root)
        links += [here / name for name in folders if (here / name).is_symlink()]
        for name in names:
            path = here / name
            if path.is_symlink():
                links.append(path)
            elif stat.S_ISREG(path.lstat().st_mode):
                files.append(path)
    return sorted(files), sorted(links)
