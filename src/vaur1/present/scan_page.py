"""One scanned video as a self-contained HTML page: the score over time, the events, their frames.

    write_text("camera.html", scan_page(result, event_frames("camera.mp4", spec, result)))

The chart plots each window's P(anomaly) at the window's middle with the threshold as a dashed line;
under it, the events (red) on the video's timeline, and the known anomalies (green) when they are
given; then a card per event with its time, class and score and a strip of its frames.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from vaur1.present.gallery import thumbnails
from vaur1.video.decode import DEFAULT_LIMITS, DecodeLimits
from vaur1.video.spec import VideoSpec
from vaur1.video.windows import Window, decode_windows

WIDTH, HEIGHT = 960, 200

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
svg { background: #fafafa; border: 1px solid #ddd; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 10px; margin: 12px 0; }
.strip { display: flex; gap: 4px; overflow-x: auto; }
figure { margin: 0; font-size: 11px; text-align: center; }
td, th { padding: 2px 8px; text-align: left; }
"""


def _x(seconds: float, duration: float) -> float:
    return 40 + (WIDTH - 50) * seconds / max(duration, 1e-6)


def _y(score: float) -> float:
    return 10 + (HEIGHT - 40) * (1 - score)


def _chart(result: dict[str, Any], truth: list[tuple[float, float]]) -> str:
    duration = float(result["duration"])
    points = [
        f"{_x((w['start'] + w['end']) / 2, duration):.1f},{_y(w['score']):.1f}"
        for w in result["windows"]
        if w["score"] is not None
    ]
    threshold = _y(float(result["threshold"]))
    parts = [
        f'<svg width="{WIDTH}" height="{HEIGHT + 30}" role="img" aria-label="anomaly score over time">',
        f'<line x1="40" x2="{WIDTH - 10}" y1="{threshold:.1f}" y2="{threshold:.1f}" stroke="#999" stroke-dasharray="4"/>',
        f'<text x="2" y="{_y(1) + 4:.0f}" font-size="10">1</text><text x="2" y="{_y(0) + 4:.0f}" font-size="10">0</text>',
        f'<polyline fill="none" stroke="#36c" stroke-width="1.5" points="{" ".join(points)}"/>',
    ]
    bar = HEIGHT - 24
    for start, end in truth:
        parts.append(_bar(start, end, duration, bar, "#2a2", "known anomaly"))
    for event in result["events"]:
        parts.append(_bar(event["start"], event["end"], duration, bar + 8, "#c33", "event"))
    for minute in range(0, int(duration // 60) + 1, max(1, int(duration // 600) or 1)):
        x = _x(minute * 60, duration)
        parts.append(f'<text x="{x:.0f}" y="{HEIGHT + 24}" font-size="10">{minute} min</text>')
    parts.append("</svg>")
    return "".join(parts)


def _bar(start: float, end: float, duration: float, y: float, colour: str, label: str) -> str:
    left, right = _x(start, duration), _x(end, duration)
    return (
        f'<rect x="{left:.1f}" y="{y:.0f}" width="{max(right - left, 2):.1f}" height="6" fill="{colour}">'
        f"<title>{label}: {start:.1f}-{end:.1f} s</title></rect>"
    )


def event_frames(
    path: str | Path, spec: VideoSpec, result: dict[str, Any], limits: DecodeLimits = DEFAULT_LIMITS
) -> dict[int, Any]:
    """{event index: its decoded frames} for a scan's events (an event whose stretch does not decode is
    shown without frames)."""
    events = [Window(event["start"], event["end"]) for event in result["events"]]
    parts = decode_windows(path, spec, events, limits=limits)
    return {index: part.video for index, part in enumerate(parts) if part.video is not None}


def scan_page(
    result: dict[str, Any], frames: dict[int, Any], truth: list[tuple[float, float]] | None = None
) -> str:
    """The page for `scan_video`'s result; `frames[i]` the decoded frames of event i (`event_frames`)."""
    escape = html.escape
    title = escape(str(result["video"]))
    scored = sum(1 for w in result["windows"] if w["score"] is not None)
    summary = (
        f"{result['duration']:.0f} s, {len(result['windows'])} windows of {result['window']:g} s every "
        f"{result['stride']:g} s ({scored} scored, {result['skipped_windows']} not decodable), "
        f"{len(result['events'])} event(s) at threshold {result['threshold']:g}"
    )
    cards = []
    for index, event in enumerate(result["events"]):
        figures = ""
        if index in frames:
            figures = "".join(
                f'<figure><img alt="" src="data:image/jpeg;base64,{jpeg}">'
                f"<figcaption>{event['start'] + stamp:.1f} s</figcaption></figure>"
                for stamp, jpeg in thumbnails(frames[index])
            )
        cards.append(
            f'<div class="card"><table><tr><th>event {index + 1}</th><td>{event["start"]:.1f} s - '
            f"{event['end']:.1f} s</td></tr><tr><th>class</th><td>{escape(event['class'] or 'not named')}</td></tr>"
            f"<tr><th>score</th><td>{event['score']:.3f}</td></tr></table>"
            f'<div class="strip">{figures}</div></div>'
        )
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>vaur1 scan: {title}</title>'
        f"<style>{_STYLE}</style></head><body><h2>{title}</h2><p>{escape(summary)}</p>"
        f"{_chart(result, truth or [])}{''.join(cards) or '<p>No event.</p>'}</body></html>\n"
    )
