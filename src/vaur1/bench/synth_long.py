"""SynthVAU long recordings: minutes to an hour of one camera, a few anomalies at known times.

    generate_recordings("recordings/", count=2, minutes=10, seed=0)

Each recording is one scene filmed without a cut: SynthVAU clips (`vaur1.bench.synth`) of `segment`
seconds, drawn one after another on the recording's own background, with its traffic renewed every
segment. Most segments are normal (half of them with two people meeting, SynthVAU's decoy); a few
carry one anomaly of a SynthVAU class, whose signature is on screen exactly over [start, end). The
first and last minute stay normal, and no two anomalous segments touch, so every event has normal
footage on both sides. A recording with `events=0` is normal throughout.

Written: DIR/videos/<name>.mp4 and DIR/events.csv with one row per event (`video`, `duration`,
`start`, `end`, `class`), and one row with class Normal and no times for a recording without events,
so that every recording is listed. Everything comes from (seed, recording index): the same seed gives
the same files.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np

from vaur1.bench.schema import NORMAL
from vaur1.bench.synth import ANOMALY_CLASSES, X264_REPRODUCIBLE, background, plan_clip, render_frame
from vaur1.errors import VaurError

EVENTS_CSV = "events.csv"
EVENT_COLUMNS = ("video", "duration", "start", "end", "class")
SEGMENT_SECONDS = (
    8.0  # the demo's clip length: a window of the demo's scan sees what the model was trained on
)
MIN_QUIET_SEGMENTS = 1  # normal segments at least between two events and at either end


def plan_recording(
    index: int, seed: int, minutes: float, events: int, size: tuple[int, int], fps: int
) -> list:
    """The segments of recording `index`: SynthVAU clip plans on one scene, `events` of them anomalous."""
    rng = np.random.default_rng([seed, 1_000_003, index])
    segments = max(1, round(minutes * 60 / SEGMENT_SECONDS))
    edge = max(MIN_QUIET_SEGMENTS, round(60 / SEGMENT_SECONDS))  # the first and last minute
    usable = list(range(edge, segments - edge))
    if events and len(usable) < 2 * events - 1:
        raise VaurError(
            f"a recording of {minutes:g} min has room for {(len(usable) + 1) // 2} events, not {events}"
        )
    chosen: list[int] = []
    for slot in rng.permutation(usable):
        if len(chosen) == events:
            break
        if all(abs(int(slot) - other) > MIN_QUIET_SEGMENTS for other in chosen):
            chosen.append(int(slot))
    if len(chosen) < events:
        raise VaurError(f"recording {index}: could not place {events} events apart in {minutes:g} min")
    classes = {slot: str(rng.choice(ANOMALY_CLASSES)) for slot in chosen}
    span = (SEGMENT_SECONDS, SEGMENT_SECONDS)
    plans = []
    for slot in range(segments):
        plan = plan_clip(int(rng.integers(0, 2**31)), seed, classes.get(slot, NORMAL), size, span, fps)
        plans.append(plan)
    first = plans[0]
    return [dataclasses.replace(p, scene=first.scene, background_seed=first.background_seed) for p in plans]


def write_recording(plans: list, path: Path) -> list[tuple[float, float, str]]:
    """Render the segments into one H.264 file; the events as (start, end, class) in seconds."""
    import av

    scene = background(plans[0])
    fps = plans[0].fps
    events = []
    offset = 0
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = plans[0].width, plans[0].height, "yuv420p"
        stream.codec_context.gop_size = 2 * fps
        stream.options = {"preset": "veryfast", "crf": "20", "threads": "1", "x264-params": X264_REPRODUCIBLE}
        for plan in plans:
            if not plan.is_normal:
                events.append(
                    ((offset + plan.onset_frame) / fps, (offset + plan.end_frame) / fps, plan.anomaly_class)
                )
            for frame in range(plan.num_frames):
                image = av.VideoFrame.from_ndarray(render_frame(plan, scene, frame), format="rgb24")
                image.pts = offset + frame
                for packet in stream.encode(image):
                    container.mux(packet)
            offset += plan.num_frames
        for packet in stream.encode():
            container.mux(packet)
    return events


def generate_recordings(
    out_dir: str | Path,
    count: int = 2,
    minutes: float = 10.0,
    events: int = 3,
    seed: int = 0,
    size: tuple[int, int] = (112, 84),
    fps: int = 8,
) -> Path:
    """Write `count` recordings of `minutes` each with `events` anomalies (the last recording normal
    throughout when count > 1, so a set holds a normal video) and events.csv; return out_dir."""
    if count < 1 or minutes <= 0 or events < 0:
        raise VaurError(
            f"long recordings: need count >= 1, minutes > 0, events >= 0; got {count}, {minutes}, {events}"
        )
    out = Path(out_dir)
    videos = out / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(count):
        wanted = 0 if count > 1 and index == count - 1 else events
        plans = plan_recording(index, seed, minutes, wanted, size, fps)
        name = f"recording_{index:03d}.mp4"
        found = write_recording(plans, videos / name)
        duration = sum(p.num_frames for p in plans) / fps
        rows += [
            {"video": name, "duration": f"{duration:g}", "start": f"{s:g}", "end": f"{e:g}", "class": c}
            for s, e, c in found
        ] or [{"video": name, "duration": f"{duration:g}", "start": "", "end": "", "class": NORMAL}]
    with (out / EVENTS_CSV).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=EVENT_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return out


def read_events(path: str | Path) -> dict[str, dict]:
    """events.csv -> {video: {"duration": s, "events": [(start, end, class), ...]}}; one line per bad row."""
    path = Path(path)
    recordings: dict[str, dict] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = set(EVENT_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise VaurError(f"{path}: missing columns {', '.join(sorted(missing))}")
        for number, row in enumerate(reader, start=2):
            try:
                entry = recordings.setdefault(
                    row["video"], {"duration": float(row["duration"]), "events": []}
                )
                if row["start"] or row["end"]:
                    start, end = float(row["start"]), float(row["end"])
                    if not 0 <= start < end <= entry["duration"]:
                        raise ValueError(f"interval {start}-{end} outside 0-{entry['duration']}")
                    entry["events"].append((start, end, row["class"]))
            except ValueError as err:
                raise VaurError(f"{path}, row {number}: {err}") from None
    return recordings
