"""`vaur1 report`: Markdown tables that hold the numbers, a self-contained HTML page with embedded
plots, runs side by side, reward curves from a training log, and report.json."""

from __future__ import annotations

import base64
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from bench_csv import row, write_csv
from vaur1.cli import main
from vaur1.errors import VaurError
from vaur1.eval.config import load_eval_config, load_examples
from vaur1.eval.run import score_run
from vaur1.present.report import stage_metrics, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# (Video Name, correct letter, class, interval)
VIDEOS = [
    ("msad_Fighting_1.mp4", "A", "Fighting", ("1.5", "4.0")),
    ("msad_Normal_2.mp4", "B", "Normal", ("0", "0")),
    ("ecva_Fire_3.mp4", "C", "Fire", ("2.0", "6.0")),
    ("ecva_Robbery_4.mp4", "D", "Robbery", ("1.0", "3.0")),
]


def good_output(task: str, letter: str, label: str, interval: tuple[str, str]) -> str:
    if task == "qa":
        return f"<answer>{letter}</answer>"
    if task == "cls":
        return f"<answer>{label}</answer>"
    if label == "Normal":
        return "<answer>Normal</answer><glue>[-1, -1]</glue>"
    return f"<answer>Anomaly</answer><glue>[{interval[0]}, {interval[1]}]</glue>"


def poor_output(task: str, letter: str, label: str, interval: tuple[str, str]) -> str:
    if task == "qa":
        return "<answer>A</answer>"
    if task == "cls":
        return "<answer>Normal</answer>"
    start, end = float(interval[0]), float(interval[1])
    return f"<answer>Anomaly</answer><glue>[{start}, {(start + end) / 2}]</glue>"  # IoU 0.5 on positives


def make_run(
    bench: Path, run_dir: Path, output, broken: str | None = None, model: str = "tiny", overrides=()
) -> Path:
    """A scored run directory from hand-written predictions (no model needed)."""
    cfg = load_eval_config(
        None,
        ["offline_scorer=false", *overrides],
        {
            "model.name_or_path": model,
            "data.bench": str(bench),
            "data.tasks": ["qa", "tag", "cls"],
            "out": str(run_dir),
        },
    )
    run_dir.mkdir(parents=True)
    lines = []
    for name, letter, label, interval in VIDEOS:
        for task in ("qa", "tag", "cls"):
            for mode in ("direct", "think"):
                record = {"key": f"test/{name}/{task}/{mode}", "video": name, "task": task, "mode": mode}
                record |= {"split": "test", "source": name.split("_")[0]}
                if name == broken:
                    record |= {
                        "output": None,
                        "status": "video_error",
                        "error": f"{name}: empty file (0 bytes)",
                    }
                else:
                    record |= {
                        "output": output(task, letter, label, interval),
                        "status": "ok",
                        "seconds": 0.1,
                    }
                lines.append(json.dumps(record))
    (run_dir / "predictions.jsonl").write_text("\n".join(lines) + "\n")
    score_run(cfg, load_examples(cfg.data, cfg.splits)[0], run_dir)
    return run_dir


def write_training_log(run_dir: Path, steps: int = 6) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    records = [
        {"step": s, "time": 1.0 * s, "loss": 1 / s, "reward/mean": 0.1 * s, "reward/iou": 0.05 * s}
        for s in range(1, steps + 1)
    ]
    (run_dir / "metrics.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in records) + '{"step": 7, "rew'
    )
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    bench = write_csv(
        root / "test.csv",
        [
            row(**{"Video Name": name, "Correct Option": letter, "Anomaly Class": label})
            | {"Start Time": interval[0], "End Time": interval[1]}
            for name, letter, label, interval in VIDEOS
        ],
    )
    training = write_training_log(root / "grpo")
    return {
        "bench": bench,
        "a": make_run(bench, root / "a", good_output, model=str(training / "final")),
        "b": make_run(bench, root / "b", poor_output, broken="ecva_Robbery_4.mp4"),
        "training": training,
        "root": root,
    }


class PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.images: list[dict[str, str]] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        values = {k: v or "" for k, v in attrs}
        if tag == "img":
            self.images.append(values)
        self.links += [values[k] for k in ("src", "href") if k in values and tag != "img"]


def table_row(markdown: str, source: str, metric: str, section: str = "") -> list[str]:
    """The run cells of one table row; `section` picks the table whose title starts with it."""
    text = "\n".join(part for part in markdown.split("\n## ") if part.startswith(section))
    (line,) = [line for line in text.splitlines() if line.startswith(f"| {source} | {metric} |")]
    return [cell.strip() for cell in line.strip("|").split("|")][2:]


def test_markdown_tables_hold_the_numbers_of_two_runs_side_by_side(runs: dict[str, Path]) -> None:
    paths = write_report([runs["a"], runs["b"]], runs["root"] / "report")
    markdown = paths["markdown"].read_text()
    assert "| source | metric | a | b |" in markdown

    a, b = table_row(markdown, "all", "Acc (w/o think)")
    assert a == "100.00 [100.00, 100.00]" and b.startswith("25.00 [")
    assert table_row(markdown, "msad", "Acc (w/ think)")[1].startswith("50.00 [")
    a, b = table_row(markdown, "all", "mIoU (w/o think)")
    assert a.startswith("100.00") and b.startswith("33.33 [")  # b: IoU 0.5, 0.5 and a missing video: 0
    assert table_row(markdown, "ecva", "R@0.5 (w/ think)")[1].startswith("50.00 [")
    assert table_row(markdown, "all", "n (w/o think)", "Temporal")[1] == "3 + 1 normal (1 missing)"
    assert table_row(markdown, "all", "Bin. Acc (w/o think)")[0].startswith("100.00")
    assert table_row(markdown, "all", "Multi Acc (w/ think)")[1].startswith("25.00 [")

    overview = {line.split("|")[1].strip(): line for line in markdown.splitlines() if line.startswith("| ")}
    assert "1 videos, 6 items" in overview["video errors"] and "0 videos, 0 items" in overview["video errors"]
    assert "| b | test | ecva_Robbery_4.mp4 | 6 | ecva_Robbery_4.mp4: empty file (0 bytes) |" in markdown
    for _caption, image in re.findall(r"!\[([^]]+)\]\(([^)]+)\)", markdown):
        assert (paths["markdown"].parent / image).read_bytes().startswith(PNG_MAGIC)


def test_later_runs_are_compared_with_the_first_item_by_item(runs: dict[str, Path]) -> None:
    markdown = write_report([runs["a"], runs["b"]], runs["root"] / "paired")["markdown"].read_text()
    assert "## Paired differences against a (points)" in markdown and "| task | metric | b - a |" in markdown
    (qa,) = table_row(markdown, "QA", "Acc (w/o think)", "Paired")
    assert qa.startswith("-75.00 [") and qa.endswith("]")
    (miou,) = table_row(markdown, "TAG", "mIoU (w/ think)", "Paired")
    assert miou.startswith("-66.67 [")  # 100 - 33.33, as in the side-by-side table
    (binary,) = table_row(markdown, "CLS", "Bin. Acc (w/o think)", "Paired")
    low, high = (float(x) for x in binary.split("[")[1].rstrip("]").split(","))
    assert low <= float(binary.split()[0]) <= high
    alone = write_report([runs["a"]], runs["root"] / "alone")["markdown"].read_text()
    assert "Paired differences" not in alone


def test_html_page_is_self_contained_and_embeds_every_plot(runs: dict[str, Path]) -> None:
    page = write_report([runs["a"], runs["b"]], runs["root"] / "page")["html"].read_text()
    parser = PageParser()
    parser.feed(page)
    parser.close()
    # 5 in the paper's layout (QA; TAG and CLS per mode), runs, QA, TAG, CLS, paired, unreadable videos
    assert parser.tags.count("table") == 11
    assert "script" not in parser.tags and "link" not in parser.tags and parser.links == []
    captions = [image["alt"] for image in parser.images]
    assert captions == [
        "TAG IoU of anomalous videos",
        "a: predicted against true intervals",
        "a: class confusion matrix",
        "a: training curves",
        "b: predicted against true intervals",
        "b: class confusion matrix",
    ]
    for image in parser.images:
        prefix = "data:image/png;base64,"
        assert image["src"].startswith(prefix)
        assert base64.b64decode(image["src"][len(prefix) :]).startswith(PNG_MAGIC)


def test_report_json_and_stage_metrics_carry_the_keys_of_eval_metrics(
    runs: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    paths = write_report([runs["a"]], runs["root"] / "single")
    data = json.loads(paths["json"].read_text())
    (run,) = data["runs"]
    assert run["name"] == "a" and run["metrics"]["tasks"]["qa"]["direct"]["accuracy"] == 100.0
    assert run["training_log"] == str(runs["training"] / "metrics.jsonl") and run["training_steps"] == 6

    stages = stage_metrics(runs["b"], "think")
    assert set(stages) == {"qa", "tag", "cls"}
    capsys.readouterr()
    code = main(
        [
            *("eval", "metrics", "--task", "tag", "--mode", "think", "--bench", str(runs["bench"])),
            *("--predictions", str(runs["b"] / "predictions.jsonl"), "--json"),
        ]
    )
    standalone = json.loads(capsys.readouterr().out)
    assert code == 0 and set(standalone) == set(stages["tag"])
    for key in ("n", "miou", "r@0.5", "ci", "by_source", "missing", "false_alarm_rate"):
        assert standalone[key] == stages["tag"][key]
    with pytest.raises(VaurError, match="not sometimes"):
        stage_metrics(runs["b"], "sometimes")


def test_training_log_alone_gives_training_curves_and_an_empty_folder_an_error(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    code = main(["report", str(runs["training"]), str(runs["a"]), "--out", str(tmp_path / "cmp")])
    assert code == 0
    printed = capsys.readouterr().out
    assert str(tmp_path / "cmp.html") in printed and (tmp_path / "cmp.json").is_file()
    markdown = (tmp_path / "cmp.md").read_text()
    assert "| model | training log only | " in markdown
    assert (tmp_path / "cmp_files" / "run1_training.png").read_bytes().startswith(PNG_MAGIC)
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "neither metrics.json (an eval run) nor metrics.jsonl" in capsys.readouterr().err
    with pytest.raises(VaurError, match="no metrics.json"):
        stage_metrics(runs["training"])
    # valid JSON that is no metrics file (found by the CLI fuzz test): one line naming the file
    for content in ("1", "0", "[]", '{"run": 5}'):
        (tmp_path / "empty" / "metrics.json").write_text(content)
        assert main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err
        assert "metrics.json: not a vaur1 metrics file" in err and "Traceback" not in err, content


def test_runs_evaluated_differently_get_a_warning_first_and_alike_runs_none(runs: dict[str, Path]) -> None:
    other = make_run(
        runs["bench"], runs["root"] / "c", good_output, overrides=["video.num_frames=4", "video.fps=null"]
    )
    out = runs["root"] / "mismatch"
    write_report([runs["a"], other], out)
    markdown = (out.parent / "mismatch.md").read_text()
    first = markdown.split("\n## ")[1]
    assert first.startswith("Warning: these runs were not evaluated alike")
    assert "video spec" in first and "4 frames" in first
    write_report([runs["a"], runs["b"]], runs["root"] / "alike")
    assert "not evaluated alike" not in (runs["root"] / "alike.md").read_text()


def test_training_curves_put_each_quantity_on_its_own_axis():
    import io

    from matplotlib import image

    from vaur1.present.plots import training_curves

    records = [
        {
            "step": s,
            "loss": 1 / s,
            "reward": 0.1 * s,
            "reward_std": 0.05,
            "reward/qa": 0.1,
            "reward/tag": 0.2,
            "kl": 0.01 * s,
            "entropy": 2.0,
            "completions/mean_length": 10.0,
            "completions/min_length": 5,
            "completions/max_length": 15,
            "learning_rate": 1e-6,
            "time/rollout": 1.0,
            "time/update": 0.5,
        }
        for s in range(1, 6)
    ]
    png = training_curves(records, "run")
    height = image.imread(io.BytesIO(png)).shape[0]
    assert height > 2.6 * 3 * 90  # 8 panels in 4 rows (of 2.6 in at 100 dpi), not one shared axis
    assert training_curves([{"step": 1}], "nothing") is None


def test_paper_layout_tables_hold_metrics_json_numbers_with_the_best_bold_and_latex_that_parses(
    runs: dict[str, Path],
) -> None:
    paths = write_report([runs["a"], runs["b"]], runs["root"] / "paper")
    metrics = {name: json.loads((runs[name] / "metrics.json").read_text()) for name in ("a", "b")}
    markdown = paths["markdown"].read_text()
    section = markdown.split("## TAG (%), Table 2 layout, w/o think")[1].split("\n## ")[0]
    header = [c.strip() for c in section.strip().splitlines()[0].strip("|").split("|")]
    rows = [
        [c.strip() for c in line.strip().strip("|").split("|")] for line in section.strip().splitlines()[2:4]
    ]
    cells = {row[0]: row for row in rows}
    for name in ("a", "b"):
        block = metrics[name]["tasks"]["tag"]["direct"]["by_source"]["msad"]
        got = cells[name][header.index("MSAD mIoU")].strip("*")
        assert float(got) == pytest.approx(block["miou"], abs=0.005)
    best = (
        "a"
        if metrics["a"]["tasks"]["tag"]["direct"]["by_source"]["msad"]["miou"]
        >= metrics["b"]["tasks"]["tag"]["direct"]["by_source"]["msad"]["miou"]
        else "b"
    )
    assert cells[best][header.index("MSAD mIoU")].startswith("**")
    latex = paths["latex"].read_text()
    assert latex.count(r"\begin{tabular}") == 5 and latex.count(r"\bottomrule") == 5
    for tabular in latex.split(r"\begin{tabular}{")[1:]:
        spec, body = tabular.split("}", 1)
        columns = spec.count("l") + spec.count("c")
        rows = [line for line in body.split(r"\midrule")[1].split(r"\bottomrule")[0].strip().splitlines()]
        assert rows and all(line.count("&") == columns - 1 and line.endswith(r"\\") for line in rows)
        assert r"\textbf{" in body


def test_paper_rows_sit_under_the_users_runs_on_request(runs: dict[str, Path], tmp_path: Path) -> None:
    assert main(["report", str(runs["a"]), str(runs["b"]), "--paper", "--out", str(tmp_path / "p")]) == 0
    markdown = (tmp_path / "p.md").read_text()
    section = markdown.split("## TAG (%), Table 2 layout, w/o think")[1].split("\n## ")[0]
    rows = {
        r[0]: r
        for r in (
            [c.strip() for c in line.strip().strip("|").split("|")]
            for line in section.strip().splitlines()[2:]
        )
    }
    header = [c.strip() for c in section.strip().splitlines()[0].strip("|").split("|")]
    assert rows["paper: + RFT"][header.index("MSAD mIoU")] == "35.77"  # the paper's Table 2
    assert rows["paper: Qwen2.5-VL-3B"][header.index("ECVA R@0.7")] == "3.23"
    assert "paper: + SFT" in (tmp_path / "p.tex").read_text()
    assert "paper:" not in write_report([runs["a"], runs["b"]], tmp_path / "plain")["markdown"].read_text()


def test_cls_in_the_paper_layout_is_per_dataset_and_pooled(runs: dict[str, Path], tmp_path: Path) -> None:
    markdown = write_report([runs["a"], runs["b"]], tmp_path / "cls")["markdown"].read_text()
    section = markdown.split("## CLS accuracy (%), Tables 3 and 7 layout, w/o think")[1].split("\n## ")[0]
    header = [c.strip() for c in section.strip().splitlines()[0].strip("|").split("|")]
    assert header[-2:] == ["pooled Bin. Acc", "pooled Multi Acc"]
    pooled = json.loads((runs["b"] / "metrics.json").read_text())["tasks"]["cls"]["direct"][
        "multiclass_accuracy"
    ]
    (row,) = [line for line in section.splitlines() if line.startswith("| b |")]
    assert float(row.strip("|").split("|")[-1].strip("* ")) == pytest.approx(pooled, abs=0.005)


def test_the_latex_tables_compile_where_tex_is_installed(runs: dict[str, Path], tmp_path: Path) -> None:
    import shutil
    import subprocess

    pdflatex = shutil.which("pdflatex")
    if pdflatex is None:
        pytest.skip("no TeX installation here (pdflatex); the tables' structure is checked above")
    tables = write_report([runs["a"], runs["b"]], tmp_path / "tex")["latex"].read_text()
    document = tmp_path / "doc.tex"
    document.write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n" + tables + "\\end{document}\n"
    )
    result = subprocess.run(
        [pdflatex, "-interaction=nonstopmode", document.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-2000:]


def test_a_report_overwrites_only_what_a_report_wrote(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "compare"
    first = write_report([runs["a"], runs["b"]], out)
    plots = sorted(p.name for p in (tmp_path / "compare_files").glob("*.png"))
    assert plots and first["markdown"].is_file()
    mine = tmp_path / "compare_files" / "my-notes.txt"
    mine.write_text("the user's own file")
    write_report([runs["a"], runs["b"]], out)  # a report again: its own plots replaced, nothing else touched
    assert mine.read_text() == "the user's own file"
    assert sorted(p.name for p in (tmp_path / "compare_files").glob("*.png")) == plots

    for name, content in (("theirs_files", None), ("theirs.md", "# my thesis draft\n")):
        target = tmp_path / name
        if content is None:
            target.mkdir()
            (target / "data.csv").write_text("precious")
        else:
            target.write_text(content)
        with pytest.raises(VaurError, match=f"{target}: exists and was not written by vaur1 report"):
            write_report([runs["a"]], tmp_path / "theirs")
        assert (
            (target / "data.csv").read_text() == "precious"
            if content is None
            else target.read_text() == content
        )
        shutil.rmtree(target) if content is None else target.unlink()


def test_names_from_data_are_escaped_in_markdown_html_and_latex(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    hostile = tmp_path / "x<img src=x onerror=alert(1)>&_%{y}"  # a folder name holds no slash
    shutil.copytree(runs["a"], hostile)
    paths = write_report([hostile, runs["b"]], tmp_path / "hostile")
    markdown, page = paths["markdown"].read_text(), paths["html"].read_text()
    assert "<img" not in markdown and "x&lt;img src=x onerror=alert(1)&gt;&amp;_%{y}" in markdown
    parser = PageParser()
    parser.feed(page)
    assert not any(image.get("onerror") for image in parser.images)
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    latex = paths["latex"].read_text()
    assert r"x\textless{}img src=x onerror=alert(1)\textgreater{}\&\_\%\{y\}" in latex
