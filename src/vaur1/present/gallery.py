"""A gallery of predictions: every evaluated item with the frames the model saw, one HTML file.

    write_gallery([run_a, run_b], "runs/eval/compare_gallery.html")

Each card shows a strip of the item's frames with their timestamps (JPEG thumbnails from the frame
cache, embedded so that the page stays one self-contained file, loaded lazily), the true and
predicted interval on a timeline for TAG, the question and options for QA, then per run the model's
raw output (think and answer), what the parser read, the scores and right or wrong. Filters pick a
task, source, mode and right/wrong; with two runs the items on which they disagree come first.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from vaur1.errors import VaurError
from vaur1.eval.config import load_examples
from vaur1.eval.predictions import read_predictions
from vaur1.eval.run import load_run_config
from vaur1.files import read_jsonl, write_text
from vaur1.layout import EvalRun
from vaur1.vocab import MODE_LABELS, REASONING, TAG

THUMBNAILS = 8  # frames per strip, evenly spread over what the model saw
THUMB_WIDTH = 112  # px; JPEG at quality 70 keeps a 1,000-item page to a few MB


def right(score: dict[str, Any] | None) -> bool | None:
    """Whether an item was answered right: the letter or class; for TAG an IoU of at least 0.5 on an
    anomalous video, no interval claimed on a normal one. None when the item has no score."""
    if score is None:
        return None
    if score.get("correct") is not None:
        return score["correct"] >= 1
    if score.get("iou") is not None:
        return score["iou"] >= 0.5
    if score.get("false_alarm") is not None:
        return score["false_alarm"] == 0
    return None


def thumbnails(video: Any) -> list[tuple[float, str]]:
    """(timestamp, base64 JPEG) for up to THUMBNAILS of the frames."""
    from PIL import Image

    frames, stamps = video.frames, video.timestamps
    picks = sorted(
        {round(i * (len(frames) - 1) / max(THUMBNAILS - 1, 1)) for i in range(min(THUMBNAILS, len(frames)))}
    )
    out = []
    for index in picks:
        image = Image.fromarray(frames[index])
        image.thumbnail((THUMB_WIDTH, THUMB_WIDTH * 4))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=70)
        out.append((float(stamps[index]), base64.b64encode(buffer.getvalue()).decode("ascii")))
    return out


def _timeline(duration: float, truth: list[float] | None, predicted: list[float] | None) -> str:
    """An inline SVG: the clip as a bar, the true interval green above, the predicted one red below."""
    width, scale = 320, 320 / max(duration, 1e-6)
    parts = [
        f'<svg class="timeline" width="{width}" height="22"><rect x="0" y="9" width="{width}" height="4" fill="#ddd"/>'
    ]
    for interval, y, color in ((truth, 2, "#2a2"), (predicted, 14, "#c33")):
        if interval:
            start, end = (max(0.0, min(v, duration)) * scale for v in interval)
            parts.append(
                f'<rect x="{start:.1f}" y="{y}" width="{max(end - start, 1):.1f}" height="6" fill="{color}"/>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _interval(text: str | None) -> list[float] | None:
    from vaur1.parse import parse_interval

    interval = parse_interval(text) if text else None
    return list(interval) if interval is not None and interval[1] > interval[0] else None


def write_gallery(run_dirs: list[str | Path], out: str | Path) -> Path:
    """The gallery of one or two eval runs (items of the first run, in its order; disagreements first)."""
    from vaur1.errors import VideoError
    from vaur1.video.cache import CachedDecoder

    if not 1 <= len(run_dirs) <= 2:
        raise VaurError("a gallery shows one run, or two side by side")
    runs = []
    for run_dir in map(Path, run_dirs):
        cfg = load_run_config(run_dir)
        scores = {(s["key"], s.get("mode")): s for s in read_jsonl(EvalRun(run_dir).sample_scores)}
        runs.append((run_dir, cfg, read_predictions(run_dir), scores))
    cfg = runs[0][1]
    examples, _ = load_examples(cfg.data, cfg.splits)
    decoder = CachedDecoder.from_config(cfg.video, cfg.cache)
    roots = cfg.data.roots()
    strips: dict[str, tuple[list[tuple[float, str]], float] | str] = {}
    cards = []
    for example in examples:
        path = str(roots.resolve(example))
        if path not in strips:
            try:
                video = decoder.get(path)
                strips[path] = (thumbnails(video), float(video.duration))
            except VideoError as err:
                strips[path] = str(err)
        for mode in cfg.modes:
            key = f"{example.key}/{mode}"
            per_run = []
            for run_dir, _, predictions, scores in runs:
                record = predictions.get(key) or {}
                score = scores.get((example.key, mode))
                per_run.append((run_dir.name, record, score, right(score)))
            verdicts = {r[3] for r in per_run}
            cards.append((len(verdicts) > 1 and len(runs) > 1, example, mode, path, per_run))
    cards.sort(key=lambda card: not card[0])  # disagreements first, otherwise the run's order
    ids = {path: f"v{i}" for i, path in enumerate(strips)}
    body = [_strip_template(ids[path], strip) for path, strip in strips.items()]
    body += [
        _card(disagree, example, mode, ids[path], strips[path], per_run)
        for disagree, example, mode, path, per_run in cards
    ]
    sources = sorted({example.source for example in examples})
    page = _PAGE.format(
        title=html.escape(" vs ".join(str(d) for d in run_dirs)),
        # names from the data (a benchmark's source labels, a config's tasks) are text, never markup
        tasks="".join(f"<option>{html.escape(t)}</option>" for t in cfg.data.tasks),
        sources="".join(f"<option>{html.escape(s)}</option>" for s in sources),
        modes="".join(f"<option>{html.escape(m)}</option>" for m in cfg.modes),
        count=len(cards),
        cards="\n".join(body),
    )
    return write_text(Path(out), page)


def _strip_template(strip_id: str, strip: Any) -> str:
    """A video's thumbnails, once per video however many items show them (cards clone it)."""
    if isinstance(strip, str):
        return ""
    figures = "".join(
        f'<figure><img loading="lazy" alt="{stamp:.1f} s" src="data:image/jpeg;base64,{jpeg}">'
        f"<figcaption>{stamp:.1f} s</figcaption></figure>"
        for stamp, jpeg in strip[0]
    )
    return f'<template id="{strip_id}">{figures}</template>'


def analysis_page(result: dict[str, Any], video: Any) -> str:
    """One analyzed video (`vaur1 analyze --out`) as the gallery shows an item: the frames the model
    saw, the predicted interval on the timeline, the answers and reasoning, and every raw output."""
    escape = html.escape
    figures = "".join(
        f'<figure><img alt="{stamp:.1f} s" src="data:image/jpeg;base64,{jpeg}"><figcaption>{stamp:.1f} s</figcaption></figure>'
        for stamp, jpeg in thumbnails(video)
    )
    anomaly = {True: "yes", False: "no", None: "unreadable (see the raw output)"}[result["anomaly"]]
    interval = result["interval"]
    rows = [
        ("anomaly", anomaly),
        ("class", result["class"] or "unreadable (see the raw output)"),
        ("interval", "-" if interval is None else f"{interval[0]:.1f} s - {interval[1]:.1f} s"),
        ("description", result["description"] or "-"),
        (REASONING, result[REASONING] or "-"),
    ]
    body = [
        f'<div class="card"><h3>{escape(str(result["video"]))}</h3><div class="strip">{figures}</div>',
        _timeline(float(video.duration), None, interval),
        "<table>"
        + "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
        + "</table>",
    ]
    body += [
        f"<h4>raw output: {escape(task)}</h4><pre>{escape(text)}</pre>"
        for task, text in result["raw"].items()
    ]
    body.append("</div>")
    head = _PAGE.split("</style>")[0].replace("{{", "{").replace("}}", "}")
    head = head.replace("vaur1 gallery: {title}", f"vaur1 analysis: {escape(str(result['video']))}")
    return head + "</style></head><body>" + "".join(body) + "</body></html>\n"


def _card(disagree: bool, example: Any, mode: str, strip_id: str, strip: Any, per_run: list) -> str:
    escape = html.escape
    verdict = per_run[0][3]
    attrs = (
        f'data-task="{escape(example.task)}" data-source="{escape(example.source)}" data-mode="{escape(mode)}" '
        f'data-right="{"right" if verdict else "wrong" if verdict is False else "none"}"'
    )
    parts = [f'<div class="card{" disagree" if disagree else ""}" {attrs}>']
    parts.append(
        f"<h3>{escape(example.id)} · {escape(example.task)} · {escape(MODE_LABELS.get(mode, mode))}</h3>"
    )
    if isinstance(strip, str):
        parts.append(f'<p class="error">{escape(strip)}</p>')
        duration = None
    else:
        duration = strip[1]
        parts.append(f'<div class="strip" data-strip="{strip_id}"></div>')
    if example.question:
        parts.append(f"<p><b>Q:</b> {escape(example.question)}</p>")
    if example.options:
        parts.append("<ol type=A>" + "".join(f"<li>{escape(o)}</li>" for o in example.options) + "</ol>")
    for name, record, score, verdict in per_run:
        badge = {True: '<span class="right">right</span>', False: '<span class="wrong">wrong</span>'}.get(
            verdict, '<span class="none">not scored</span>'
        )
        parts.append(f"<h4>{escape(name)} {badge}</h4>")
        if example.task == TAG and duration is not None and score is not None:
            truth = list(example.interval) if example.interval and example.interval[1] > 0 else None
            parts.append(_timeline(duration, truth, _interval(score.get("prediction"))))
        if score is not None:
            shown = {
                k: score[k]
                for k in ("target", "prediction", "correct", "iou", "false_alarm")
                if score.get(k) is not None
            }
            parts.append(f"<p class='scores'>{escape(', '.join(f'{k}: {v}' for k, v in shown.items()))}</p>")
        output = record.get("output")
        parts.append(
            f"<pre>{escape(output if output is not None else record.get('error') or 'no prediction')}</pre>"
        )
    parts.append("</div>")
    return "".join(parts)


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>vaur1 gallery: {title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }}
.card {{ border: 1px solid #ccc; border-radius: 6px; padding: 0.6em 0.9em; margin: 0.8em 0; }}
.card.disagree {{ border-color: #d80; }}
.strip {{ display: flex; gap: 4px; overflow-x: auto; }} figure {{ margin: 0; font-size: 0.7em; text-align: center; }}
pre {{ background: #f6f6f6; padding: 0.5em; white-space: pre-wrap; font-size: 0.8em; }}
.right {{ color: #2a2; }} .wrong {{ color: #c33; }} .none {{ color: #888; }} .error {{ color: #c33; }}
.scores {{ font-size: 0.8em; color: #555; }} h3 {{ margin: 0.2em 0; font-size: 1em; }} h4 {{ margin: 0.4em 0 0.2em; }}
</style></head><body>
<h1>vaur1 gallery: {title}</h1>
<p>task <select id="task"><option value="">all</option>{tasks}</select>
source <select id="source"><option value="">all</option>{sources}</select>
mode <select id="mode"><option value="">all</option>{modes}</select>
first run <select id="right"><option value="">all</option><option>right</option><option>wrong</option></select>
<span id="shown">{count}</span> of {count} items</p>
{cards}
<script>
const keys = ["task", "source", "mode", "right"];
function filter() {{
  let shown = 0;
  for (const card of document.querySelectorAll(".card")) {{
    const ok = keys.every(k => !document.getElementById(k).value || card.dataset[k] === document.getElementById(k).value);
    card.style.display = ok ? "" : "none";
    shown += ok;
  }}
  document.getElementById("shown").textContent = shown;
}}
for (const k of keys) document.getElementById(k).addEventListener("change", filter);
for (const strip of document.querySelectorAll(".strip")) {{
  strip.appendChild(document.getElementById(strip.dataset.strip).content.cloneNode(true));
}}
</script>
</body></html>
"""
