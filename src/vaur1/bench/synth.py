"""SynthVAU: a synthetic VAU-Bench that ships with vaur1, for the demo, the tests and anyone
without the real videos.

Each clip is toy-scale surveillance footage: a static scene (street, parking lot or plaza) with
people and cars moving along straight paths. An anomalous clip adds one event of a VAU-Bench
class with a large, saturated, class-specific signature (a magenta cross for Fighting, a yellow
body for People_falling, a cyan diamond for Traffic_accident, an orange flame for Fire, a white
blast for Explosion, a green loot box for Stealing) drawn exactly on the frames in
[onset, end) and on no other frame. Normal clips (about a third) carry no signature, but may show
two people meeting, so walking together is no cue. Each class has two actor variants drawn
differently (two cars colliding or a car hitting a pedestrian).

Every question offers the same shape of options: one normal option, both actor variants of one
anomaly class and one option of another class. An anomalous clip's pair is its own class (the
other variant is the "wrong actors" distractor); a normal clip's pair is a random class. So the
options alone do not give the answer away: a reader without the video scores at most 1/3, one
that sees the class but not the actors 2/3.

Everything about clip i comes from its own generator seeded with (seed, i), so the output is the
same for a seed whatever the number of worker processes. The CSVs follow the VAU-Bench schema
exactly; videos are `DIR/videos/<id>.mp4`, named `synth_<id>.mp4` in the CSVs.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from vaur1.bench.schema import COLUMNS, LETTERS, NORMAL
from vaur1.errors import VaurError
from vaur1.layout import SYNTH_MANIFEST

ANOMALY_CLASSES = ("Fighting", "People_falling", "Traffic_accident", "Fire", "Explosion", "Stealing")
NORMAL_SHARE = 1 / 3
DEFAULT_SIZE = (160, 120)  # width, height
DEFAULT_DURATION = (8.0, 16.0)  # seconds
DEFAULT_FPS = 8
# 2: short descriptions (they open every <think> target); 3: short QA options that name the event
# in the words of its class (a fight, a traffic accident, an explosion, stealing), without the place,
# and options of one shape for every clip (before, a normal option appeared only in normal clips and
# an anomaly class with both its variants only in anomalous ones: 2/3 of the answers without the video)
GENERATOR_VERSION = 3

Colour = tuple[int, int, int]

# Saturated colours that nothing else in a scene uses: each class is readable from one frame.
SIGNATURE: dict[str, Colour] = {
    "Fighting": (255, 0, 220),
    "People_falling": (255, 235, 0),
    "Traffic_accident": (0, 235, 255),
    "Fire": (255, 70, 0),
    "Explosion": (255, 255, 255),
    "Stealing": (0, 255, 60),
}
# The scene's palette is muted, so that no clutter looks like a signature.
COATS: dict[str, Colour] = {
    "navy": (40, 50, 95),
    "brown": (105, 75, 50),
    "grey": (115, 115, 115),
    "maroon": (110, 40, 45),
    "olive": (90, 95, 50),
    "black": (30, 30, 32),
}
CARS: dict[str, Colour] = {"dark grey": (65, 65, 72), "blue": (45, 65, 110), "silver": (150, 150, 155)}
SKIN: Colour = (175, 145, 120)
DARK: Colour = (28, 28, 30)
SCENES = {"street": "a city street", "parking": "a parking lot", "plaza": "a pedestrian plaza"}


@dataclass(frozen=True)
class Variant:
    """Who takes part in an event, as drawn and as written."""

    actors: str  # "two people", ... (the Key Object column)
    option: str  # the QA option; the description adds the place
    evidence: str  # what the frames show during the event, in a few words (it goes into <think> targets)
    cause: str


VARIANTS: dict[str, tuple[Variant, Variant]] = {
    "Fighting": (
        Variant(
            "two people",
            "Two people get into a fistfight.",
            "a flashing magenta cross around two people",
            "an argument escalates into a fight",
        ),
        Variant(
            "three people",
            "Three people fight each other.",
            "a flashing magenta cross around three people",
            "a quarrel turns into a brawl",
        ),
    ),
    "People_falling": (
        Variant(
            "pedestrian",
            "A pedestrian falls to the ground.",
            "a yellow body shape lies flat",
            "the person loses balance and falls",
        ),
        Variant(
            "cyclist, bicycle",
            "A cyclist falls off a bicycle.",
            "a yellow body shape lies next to a bicycle",
            "the rider loses control and falls",
        ),
    ),
    "Traffic_accident": (
        Variant(
            "two cars",
            "Two cars collide in a traffic accident.",
            "two cars stop inside a cyan diamond",
            "the cars do not brake and crash",
        ),
        Variant(
            "car, pedestrian",
            "A car hits a pedestrian in a traffic accident.",
            "a car and a lying pedestrian inside a cyan diamond",
            "the driver does not stop for the pedestrian",
        ),
    ),
    "Fire": (
        Variant(
            "parked car, flames",
            "A parked car catches fire.",
            "orange flames above a parked car",
            "the car ignites and burns",
        ),
        Variant(
            "trash bin, flames",
            "A trash bin catches fire.",
            "orange flames above a trash bin",
            "the rubbish in the bin ignites",
        ),
    ),
    "Explosion": (
        Variant(
            "parked car, blast",
            "A parked car is destroyed in an explosion.",
            "a white blast where a parked car stood",
            "the car blows up",
        ),
        Variant(
            "gas cylinder, blast",
            "A gas cylinder bursts in an explosion.",
            "a white blast where a gas cylinder stood",
            "the cylinder bursts",
        ),
    ),
    "Stealing": (
        Variant(
            "thief, bag",
            "A thief is stealing a bag from a bench.",
            "a green box carried away from a bench",
            "the thief takes the unattended bag",
        ),
        Variant(
            "thief, bicycle",
            "A thief is stealing a parked bicycle.",
            "a green bar carried away",
            "the thief takes the parked bicycle",
        ),
    ),
}
NORMAL_OPTIONS = (
    "People walk through {scene} and nothing unusual happens.",
    "Pedestrians and traffic move normally through {scene}.",
)
PLACES_ACROSS = ("on the left side", "in the centre", "on the right side")
PLACES_DEPTH = ("in the foreground", "in the middle distance")
QUESTIONS = (
    "What happens in this surveillance video?",
    "Which description matches the events in the video?",
    "What does the camera record?",
    "Which event takes place in this footage?",
)


def annotation_texts() -> list[str]:
    """The sentences SynthVAU's questions, options, descriptions and reasoning are built from.

    The tiny model's tokenizer learns its vocabulary from them as well (`vaur1.model.tiny`), as a real
    tokenizer knows the words of English: a QA option is then a few word tokens, not letter soup.
    """
    scenes = list(SCENES.values())
    variants = [v for pair in VARIANTS.values() for v in pair]
    return [
        *QUESTIONS,
        *(option.format(scene=scene) for option in NORMAL_OPTIONS for scene in scenes),
        *(f"{v.option} {v.actors}: {v.evidence}; {v.cause}." for v in variants),
        *(
            f"{across} of {scene}, {depth}"
            for across in PLACES_ACROSS
            for scene in scenes
            for depth in PLACES_DEPTH
        ),
        "Only routine movement, no signature. Over all the seconds the scene shows only routine movement.",
        "The scene is ordinary until then; from then until the end the frames show the event, "
        "and afterwards the scene returns to routine movement. The video is normal. Two people meet and walk on.",
    ]


@dataclass(frozen=True)
class Mover:
    """Background traffic: a person or car moving on a straight line while on screen."""

    kind: str  # person | car
    colour: Colour
    x: float  # position at t = 0 (pixels, may be off screen)
    y: float
    vx: float  # pixels per second
    vy: float


@dataclass(frozen=True)
class ClipPlan:
    """Every random choice behind one clip; rendering and annotation read only this."""

    index: int
    name: str  # the file stem: videos/<name>.mp4, `synth_<name>.mp4` in the CSV
    anomaly_class: str
    variant: int  # 0 or 1 (see VARIANTS)
    scene: str
    width: int
    height: int
    fps: int
    num_frames: int
    onset_frame: int  # the signature is on frames [onset_frame, end_frame); both 0 for normal clips
    end_frame: int
    cx: float  # where the event (or the decoy meeting) happens
    cy: float
    side: int  # +1 or -1: where participants come from
    coats: tuple[str, ...]  # participants' coat colours
    car: str
    movers: tuple[Mover, ...]
    decoy: bool  # normal clips: two people meet at (cx, cy) between onset_frame and end_frame
    question: int
    background_seed: int

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    @property
    def onset(self) -> float:
        return self.onset_frame / self.fps

    @property
    def end(self) -> float:
        return self.end_frame / self.fps

    @property
    def is_normal(self) -> bool:
        return self.anomaly_class == NORMAL

    @property
    def size(self) -> float:
        """The signature's extent in pixels."""
        return 0.42 * self.height


def plan_clip(
    index: int,
    seed: int,
    anomaly_class: str,
    size: tuple[int, int] = DEFAULT_SIZE,
    duration: tuple[float, float] = DEFAULT_DURATION,
    fps: int = DEFAULT_FPS,
) -> ClipPlan:
    """Draw clip `index`'s scene, traffic and event from its own generator."""
    rng = np.random.default_rng([seed, index])
    width, height = size
    num_frames = int(rng.integers(round(duration[0] * fps), round(duration[1] * fps) + 1))
    shortest = max(2, round(0.2 * num_frames))
    longest = max(shortest, round(0.6 * num_frames))
    length = int(rng.integers(shortest, longest + 1))
    onset_frame = int(rng.integers(1, num_frames - length))
    scene = str(rng.choice(list(SCENES)))
    movers = _traffic(rng, scene, width, height, num_frames / fps)
    is_normal = anomaly_class == NORMAL
    decoy = bool(is_normal and rng.random() < 0.5)
    return ClipPlan(
        index=index,
        name=f"{index:05d}",
        anomaly_class=anomaly_class,
        variant=int(rng.integers(0, 2)),
        scene=scene,
        width=width,
        height=height,
        fps=fps,
        num_frames=num_frames,
        onset_frame=0 if is_normal and not decoy else onset_frame,
        end_frame=0 if is_normal and not decoy else onset_frame + length,
        cx=float(rng.uniform(0.3, 0.7) * width),
        cy=float(rng.uniform(0.52, 0.72) * height),
        side=int(rng.choice([-1, 1])),
        coats=tuple(str(c) for c in rng.choice(list(COATS), size=3, replace=False)),
        car=str(rng.choice(list(CARS))),
        movers=movers,
        decoy=decoy,
        question=int(rng.integers(0, len(QUESTIONS))),
        background_seed=int(rng.integers(0, 2**31)),
    )


def _traffic(
    rng: np.random.Generator, scene: str, width: int, height: int, seconds: float
) -> tuple[Mover, ...]:
    """People crossing the ground and cars driving along lanes, on screen at random times."""
    movers = []
    for _ in range(int(rng.integers(2, 6))):
        direction = rng.choice([-1, 1])
        speed = rng.uniform(0.06, 0.15) * width
        entry = rng.uniform(-0.8, 0.9) * seconds  # when it enters the frame
        movers.append(
            Mover(
                kind="person",
                colour=COATS[str(rng.choice(list(COATS)))],
                x=(-0.05 * width if direction > 0 else 1.05 * width) - direction * speed * entry,
                y=rng.uniform(0.45, 0.92) * height,
                vx=direction * speed,
                vy=rng.uniform(-0.02, 0.02) * height,
            )
        )
    lanes = {"street": (0.56, 0.76), "parking": (0.62,), "plaza": ()}[scene]
    for lane in lanes:
        for _ in range(int(rng.integers(0, 3))):
            direction = rng.choice([-1, 1])
            speed = rng.uniform(0.25, 0.5) * width * (0.5 if scene == "parking" else 1.0)
            entry = rng.uniform(-0.2, 0.9) * seconds
            movers.append(
                Mover(
                    kind="car",
                    colour=CARS[str(rng.choice(list(CARS)))],
                    x=(-0.15 * width if direction > 0 else 1.15 * width) - direction * speed * entry,
                    y=lane * height,
                    vx=direction * speed,
                    vy=0.0,
                )
            )
    return tuple(movers)


# ---- drawing --------------------------------------------------------------------------------


@cache
def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:height, 0:width]
    return yy.astype(np.float32), xx.astype(np.float32)


def _rect(img: np.ndarray, cx: float, cy: float, w: float, h: float, colour: Colour) -> None:
    """A filled rectangle of size w x h centred on (cx, cy), clipped to the frame."""
    height, width = img.shape[:2]
    x0, x1 = max(0, round(cx - w / 2)), min(width, round(cx + w / 2))
    y0, y1 = max(0, round(cy - h / 2)), min(height, round(cy + h / 2))
    if x1 > x0 and y1 > y0:
        img[y0:y1, x0:x1] = colour


def _disk(img: np.ndarray, cx: float, cy: float, r: float, colour: Colour) -> None:
    yy, xx = _grid(*img.shape[:2])
    img[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = colour


def _person(img: np.ndarray, x: float, y: float, colour: Colour, unit: float, lying: bool = False) -> None:
    """A standing (or lying) figure whose feet (or side) are at (x, y)."""
    body_w, body_h = max(2.0, 3.5 * unit), max(4.0, 11 * unit)
    head = max(2.0, 3 * unit)
    if lying:
        _rect(img, x, y - body_w / 2, body_h, body_w, colour)
        _rect(img, x - body_h / 2 - head / 2, y - body_w / 2, head, head, SKIN)
    else:
        _rect(img, x, y - body_h / 2, body_w, body_h, colour)
        _rect(img, x, y - body_h - head / 2, head, head, SKIN)


def _car(img: np.ndarray, x: float, y: float, colour: Colour, unit: float) -> None:
    _rect(img, x, y, 24 * unit, 10 * unit, colour)
    _rect(img, x, y - 6 * unit, 12 * unit, 5 * unit, tuple(min(255, c + 40) for c in colour))


def _bicycle(img: np.ndarray, x: float, y: float, unit: float, colour: Colour = DARK) -> None:
    _disk(img, x - 5 * unit, y, 3 * unit, colour)
    _disk(img, x + 5 * unit, y, 3 * unit, colour)
    _rect(img, x, y - 2 * unit, 10 * unit, max(1.0, 1.5 * unit), colour)


def background(plan: ClipPlan) -> np.ndarray:
    """The static scene: ground, structures and fixed clutter, with a little sensor grain."""
    w, h = plan.width, plan.height
    rng = np.random.default_rng(plan.background_seed)
    img = np.empty((h, w, 3), dtype=np.uint8)
    if plan.scene == "street":
        img[:] = (150, 148, 140)
        img[: int(0.38 * h)] = (120, 100, 90)
        for x in range(int(0.04 * w), w, max(4, int(0.12 * w))):
            for y in range(int(0.05 * h), int(0.32 * h), max(4, int(0.1 * h))):
                _rect(img, x + 0.04 * w, y + 0.03 * h, 0.05 * w, 0.05 * h, (70, 80, 92))
        img[int(0.48 * h) : int(0.84 * h)] = (85, 85, 90)
        for x in range(0, w, max(6, int(0.15 * w))):
            _rect(img, x, 0.66 * h, 0.07 * w, max(1, 0.012 * h), (170, 170, 160))
    elif plan.scene == "parking":
        img[:] = (95, 95, 100)
        for x in range(0, w, max(6, int(0.12 * w))):
            _rect(img, x, 0.2 * h, max(1, 0.01 * w), 0.3 * h, (160, 160, 150))
            _rect(img, x, 0.92 * h, max(1, 0.01 * w), 0.16 * h, (160, 160, 150))
        for x in rng.choice(np.arange(0.06, 0.95, 0.12), size=3, replace=False):
            _car(img, float(x) * w + 0.06 * w, 0.22 * h, CARS[str(rng.choice(list(CARS)))], h / 120)
    else:
        img[:] = (150, 140, 120)
        step = max(4, int(0.1 * h))
        img[::step] = (132, 122, 106)
        img[:, ::step] = (132, 122, 106)
        for _ in range(3):
            _disk(img, rng.uniform(0.05, 0.95) * w, rng.uniform(0.08, 0.3) * h, 0.08 * h, (55, 80, 55))
        _rect(img, rng.uniform(0.2, 0.8) * w, 0.4 * h, 0.18 * w, 0.03 * h, (90, 70, 50))
    grain = rng.integers(-5, 6, size=img.shape, dtype=np.int16)
    return np.clip(img.astype(np.int16) + grain, 0, 255).astype(np.uint8)


def _approach(plan: ClipPlan, x_target: float, t: float, speed: float) -> float:
    """x of a participant walking in to x_target by the onset and away after the end."""
    if t < plan.onset:
        return x_target + plan.side * speed * (plan.onset - t)
    if t >= plan.end:
        return x_target - plan.side * speed * (t - plan.end)
    return x_target


def _draw_event(img: np.ndarray, plan: ClipPlan, frame: int) -> None:
    t = frame / plan.fps
    unit = plan.height / 120
    s, cx, cy = plan.size, plan.cx, plan.cy
    during = plan.onset_frame <= frame < plan.end_frame
    progress = (frame - plan.onset_frame) / max(1, plan.end_frame - plan.onset_frame - 1)
    walk = 0.12 * plan.width
    coats = [COATS[c] for c in plan.coats]
    yy, xx = _grid(plan.height, plan.width)
    kind = "Meeting" if plan.is_normal else plan.anomaly_class
    jitter = (1 if frame % 2 else -1) * 2 * unit if during else 0.0

    if kind in ("Meeting", "Fighting"):
        count = 3 if kind == "Fighting" and plan.variant == 1 else 2
        offsets = (-0.25, 0.0, 0.25) if count == 3 else (-0.18, 0.18)
        if during and kind == "Fighting":
            thick = max(2.0, s / 7)
            inside = (abs(xx - cx) <= s / 2) & (abs(yy - cy) <= s / 2)
            cross = (abs((xx - cx) - (yy - cy)) <= thick) | (abs((xx - cx) + (yy - cy)) <= thick)
            img[inside & cross] = SIGNATURE["Fighting"]
        for k, offset in enumerate(offsets):
            x = _approach(plan, cx + offset * s, t, walk * (1 if k % 2 else -1))
            _person(img, x + (jitter if k % 2 else -jitter), cy + s * 0.3, coats[k], unit)
    elif kind == "People_falling":
        x = _approach(plan, cx, t, walk)
        if during:
            body = SIGNATURE["People_falling"]
            _rect(img, cx, cy, s + 2, s / 3 + 2, DARK)
            _rect(img, cx, cy, s, s / 3, body)
            _rect(img, cx - s / 2 - s / 10, cy, s / 5, s / 5, SKIN)
            if plan.variant == 1:
                _bicycle(img, cx + s * 0.2, cy + s * 0.35, unit)
        else:
            _person(img, x, cy + s * 0.3, coats[0], unit)
            if plan.variant == 1:
                _bicycle(img, x, cy + s * 0.3, unit)
    elif kind == "Traffic_accident":
        drive = 0.35 * plan.width
        if during:
            r = s / 2
            diamond = abs(xx - cx) + abs(yy - cy)
            img[(diamond <= r) & (diamond >= r - max(2.0, s / 4.5))] = SIGNATURE["Traffic_accident"]
            _car(img, cx - 8 * unit, cy, CARS[plan.car], unit)
            if plan.variant == 0:
                _car(img, cx + 8 * unit, cy + 4 * unit, (60, 60, 60), unit)
            else:
                _person(img, cx + 14 * unit, cy + 2 * unit, coats[0], unit, lying=True)
        elif t < plan.onset:
            _car(img, cx - 8 * unit - drive * (plan.onset - t), cy, CARS[plan.car], unit)
            if plan.variant == 0:
                _car(img, cx + 8 * unit + drive * (plan.onset - t), cy + 4 * unit, (60, 60, 60), unit)
            else:
                _person(img, cx + 14 * unit, cy - 0.1 * plan.height * (plan.onset - t), coats[0], unit)
    elif kind == "Fire":
        charred = t >= plan.end
        if plan.variant == 0:
            _car(img, cx, cy + s * 0.3, DARK if charred else CARS[plan.car], unit)
        else:
            _rect(img, cx, cy + s * 0.25, s / 4, s / 3, DARK if charred else (70, 85, 70))
        if during:
            flame_h = s * (0.85 + 0.15 * math.sin(frame * 2.3))
            top = cy + s * 0.3 - flame_h
            depth = (yy - top) / flame_h
            img[(depth >= 0) & (depth <= 1) & (abs(xx - cx) <= 0.4 * s * depth)] = SIGNATURE["Fire"]
            _disk(img, cx + 2 * unit * math.sin(frame), top - s * 0.15, s / 7, (105, 105, 105))
    elif kind == "Explosion":
        if t < plan.onset:
            if plan.variant == 0:
                _car(img, cx, cy, CARS[plan.car], unit)
            else:
                _rect(img, cx, cy, s / 6, s / 3, (120, 50, 50))
        elif during:
            _disk(img, cx, cy, s * (0.3 + 0.25 * progress), SIGNATURE["Explosion"])
        else:
            for k in range(5):
                _rect(img, cx + (k - 2) * s / 4, cy + s * 0.2 * (k % 2), 3 * unit, 2 * unit, DARK)
    elif kind == "Stealing":
        if plan.variant == 0:
            _rect(img, cx, cy + s * 0.05, s * 0.8, s * 0.08, (90, 70, 50))  # the bench
        if t < plan.onset:
            if plan.variant == 0:
                _rect(img, cx, cy - s * 0.12, s * 0.3, s * 0.25, (100, 80, 60))
            else:
                _bicycle(img, cx, cy, unit)
            _person(img, _approach(plan, cx, t, walk), cy + s * 0.3, coats[0], unit)
        elif during:
            edge = plan.width - s * 0.4 if plan.side < 0 else s * 0.4  # runs away from where it came
            x = cx + (edge - cx) * progress
            loot = (s * 0.6, s * 0.6) if plan.variant == 0 else (s * 0.8, s * 0.35)
            _rect(img, x, cy - s * 0.1, *loot, SIGNATURE["Stealing"])
            _person(img, x, cy + s * 0.3, coats[0], unit)


def render_frame(plan: ClipPlan, scene: np.ndarray, frame: int) -> np.ndarray:
    img = scene.copy()
    t = frame / plan.fps
    unit = plan.height / 120
    for mover in plan.movers:
        x, y = mover.x + mover.vx * t, mover.y + mover.vy * t
        if mover.kind == "person":
            _person(img, x, y, mover.colour, unit)
        else:
            _car(img, x, y, mover.colour, unit)
    if not plan.is_normal or plan.decoy:
        _draw_event(img, plan, frame)
    return img


# x264's lookahead (adaptive B-frames, scene cuts, macroblock tree) gives different bytes from run
# to run on these small synthetic frames, even single-threaded; without it the output is reproducible.
X264_REPRODUCIBLE = "scenecut=0:b-adapt=0:mbtree=0"


def write_clip(plan: ClipPlan, path: Path, gop: int | None = None, preset: str = "veryfast") -> Path:
    """Render and encode one clip as H.264 mp4 with a keyframe every `gop` frames (default 2 s)."""
    import av  # here, not at the top: the tiny tokenizer reads this module's texts without PyAV

    scene = background(plan)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=plan.fps)
        stream.width, stream.height, stream.pix_fmt = plan.width, plan.height, "yuv420p"
        stream.codec_context.gop_size = gop or 2 * plan.fps
        stream.options = {"preset": preset, "crf": "20", "threads": "1", "x264-params": X264_REPRODUCIBLE}
        for frame in range(plan.num_frames):
            image = av.VideoFrame.from_ndarray(render_frame(plan, scene, frame), format="rgb24")
            image.pts = frame
            for packet in stream.encode(image):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


# ---- annotation -----------------------------------------------------------------------------


def _place(plan: ClipPlan) -> str:
    across = PLACES_ACROSS[min(2, int(3 * plan.cx / plan.width))]
    depth = PLACES_DEPTH[0 if plan.cy > 0.62 * plan.height else 1]
    return f"{across} of {SCENES[plan.scene]}, {depth}"


def _seconds(value: float) -> str:
    return f"{value:.3f}"


def annotate(plan: ClipPlan) -> dict[str, str]:
    """The clip's CSV row: question, shuffled options, key objects, description and reasoning."""
    rng = np.random.default_rng([plan.index, plan.background_seed])
    place = _place(plan)
    scene = SCENES[plan.scene]
    others = [c for c in ANOMALY_CLASSES if c != plan.anomaly_class]
    picked = [others[i] for i in rng.permutation(len(others))]

    def option_of(name: str, variant: int) -> str:
        if name == NORMAL:
            return NORMAL_OPTIONS[variant].format(scene=scene)
        return VARIANTS[name][variant].option

    if plan.is_normal:
        correct = option_of(NORMAL, plan.variant)
        pair, single = picked[:2]  # the same shape as an anomalous clip's options
        distractors = [option_of(pair, 0), option_of(pair, 1), option_of(single, int(rng.integers(0, 2)))]
        key_object = "pedestrians, cars" if any(m.kind == "car" for m in plan.movers) else "pedestrians"
        meeting = " Two people meet and walk on." if plan.decoy else ""
        description = f"{correct}{meeting}"
        reasoning = {
            "Specific Anomaly Type": "None, normal activity",
            "Location": scene,
            "Key Evidence": "only routine movement, no signature",
            "Detailed Explanation": f"Over all {plan.duration:.1f}s the scene shows only routine movement.",
            "Cause and Effect": "nothing unusual starts",
            "Conclusion": "The video is normal.",
        }
    else:
        variant = VARIANTS[plan.anomaly_class][plan.variant]
        correct = option_of(plan.anomaly_class, plan.variant)
        wrong_actors = option_of(plan.anomaly_class, 1 - plan.variant)
        distractors = [
            wrong_actors,
            option_of(picked[0], int(rng.integers(0, 2))),
            option_of(NORMAL, int(rng.integers(0, 2))),
        ]
        key_object = variant.actors
        label = plan.anomaly_class.replace("_", " ").lower()
        description = f"{correct.removesuffix('.')} {place}."
        reasoning = {
            "Specific Anomaly Type": plan.anomaly_class.replace("_", " "),
            "Location": place,
            "Key Evidence": variant.evidence,
            "Detailed Explanation": (
                f"The scene is ordinary until {plan.onset:.1f}s; from then until {plan.end:.1f}s the frames show "
                f"{variant.evidence}, "
                "and afterwards the scene returns to routine movement."
            ),
            "Cause and Effect": variant.cause,
            "Conclusion": f"The video shows {label} from {plan.onset:.1f}s to {plan.end:.1f}s.",
        }
    options = [correct, *distractors]
    order = rng.permutation(4)
    shuffled = [options[i] for i in order]
    answer = LETTERS[int(np.flatnonzero(order == 0)[0])]
    start, end = (0.0, 0.0) if plan.is_normal else (plan.onset, plan.end)
    return {
        "Video Name": f"synth_{plan.name}.mp4",
        "Question": QUESTIONS[plan.question],
        "Option 1": shuffled[0],
        "Option 2": shuffled[1],
        "Option 3": shuffled[2],
        "Option 4": shuffled[3],
        "Correct Option": answer,
        "Key Object": key_object,
        "Description": description,
        "Reasoning": " ".join(f"### {name}: {text}" for name, text in reasoning.items()),
        "Anomaly Class": plan.anomaly_class,
        "Start Time": _seconds(start),
        "End Time": _seconds(end),
    }


# ---- the benchmark --------------------------------------------------------------------------


def parse_split_ratio(text: str | tuple[float, ...]) -> tuple[float, ...]:
    """`0.8` -> (0.8, 0.2) train/test; `0.7,0.1,0.2` -> train/val/test."""
    try:
        parts = tuple(float(p) for p in text.split(",")) if isinstance(text, str) else tuple(text)
    except ValueError:
        raise VaurError(f"split ratio {text!r}: expected e.g. 0.8 or 0.7,0.1,0.2") from None
    if len(parts) == 1:
        parts = (parts[0], 1.0 - parts[0])
    if len(parts) not in (2, 3) or any(p < 0 for p in parts) or abs(sum(parts) - 1.0) > 1e-6 or parts[0] <= 0:
        raise VaurError(f"split ratio {text!r}: need 2 or 3 non-negative parts summing to 1, train > 0")
    return parts


def _split_names(ratio: tuple[float, ...]) -> tuple[str, ...]:
    return ("train", "test") if len(ratio) == 2 else ("train", "val", "test")


def class_schedule(n: int, seed: int, stream: int = 0) -> list[str]:
    """The class of every clip: a third normal, the rest spread evenly over the anomaly classes.

    `stream` draws an independent order for the same seed (1: the extra test clips).
    """
    normal = round(n * NORMAL_SHARE)
    classes = [NORMAL] * normal + [ANOMALY_CLASSES[i % len(ANOMALY_CLASSES)] for i in range(n - normal)]
    order = np.random.default_rng([seed, 2**32 - 1 - stream]).permutation(n)
    return [classes[i] for i in order]


def _assign_splits(classes: list[str], ratio: tuple[float, ...]) -> list[str]:
    """Split names in the exact ratio, spread evenly over each class.

    Clips are taken class by class; each goes to the split furthest behind its share so far, so the
    splits interleave (train, train, test, train, ...) and every class is divided in the ratio.
    """
    names = _split_names(ratio)
    split = [""] * len(classes)
    given = [0] * len(ratio)
    for k, i in enumerate(sorted(range(len(classes)), key=lambda i: (classes[i], i))):
        behind = max(range(len(ratio)), key=lambda j: ((k + 1) * ratio[j] - given[j], -j))
        given[behind] += 1
        split[i] = names[behind]
    return split


def _make_clip(job: tuple[int, int, str, tuple[int, int], tuple[float, float], int, str]) -> dict[str, str]:
    index, seed, anomaly_class, size, duration, fps, folder = job
    plan = plan_clip(index, seed, anomaly_class, size, duration, fps)
    write_clip(plan, Path(folder) / f"{plan.name}.mp4")
    return annotate(plan)


def _check_arguments(
    n: int, extra_test: int, size: tuple[int, int], duration: tuple[float, float], fps: int
) -> None:
    width, height = size
    if n < 1:
        raise VaurError(f"--n: need at least one clip, got {n}")
    if extra_test < 0:
        raise VaurError(f"--extra-test: need 0 or more clips, got {extra_test}")
    if width < 32 or height < 32 or width % 2 or height % 2:
        raise VaurError(f"--size: need even sides of at least 32 pixels, got {width}x{height}")
    if not 0 < duration[0] <= duration[1]:
        raise VaurError(f"--duration: need 0 < A <= B, got {duration[0]}..{duration[1]}")
    if fps < 1 or duration[0] * fps < 8:
        raise VaurError(f"clips need at least 8 frames: duration {duration[0]} s at {fps} fps is too short")


def _clear_previous(out: Path) -> None:
    """Remove an earlier SynthVAU from `out`, so no stale CSV or clip survives; refuse any other content."""
    if not out.exists() or not any(out.iterdir()):
        return
    if not (out / SYNTH_MANIFEST).is_file():
        raise VaurError(
            f"{out}: folder is not empty and holds no synthvau.json; choose an empty or new folder"
        )
    for name in ("train.csv", "val.csv", "test.csv", SYNTH_MANIFEST):
        (out / name).unlink(missing_ok=True)
    for clip in (out / "videos").glob("*.mp4"):
        clip.unlink()


def generate_synthvau(
    out_dir: str | Path,
    n: int,
    seed: int = 0,
    split_ratio: str | tuple[float, ...] = (0.8, 0.2),
    size: tuple[int, int] = DEFAULT_SIZE,
    duration: tuple[float, float] = DEFAULT_DURATION,
    fps: int = DEFAULT_FPS,
    workers: int | None = None,
    extra_test: int = 0,
) -> Path:
    """Write `n` clips to out_dir/videos and train/[val/]test.csv plus synthvau.json; return out_dir.

    `extra_test` more clips (numbered after the `n`) go to the test split alone: a larger test split
    whose train and val clips are exactly those of `extra_test=0`.
    An earlier SynthVAU in out_dir is replaced; a folder holding anything else is refused.
    """
    ratio = parse_split_ratio(split_ratio)
    _check_arguments(n, extra_test, size, duration, fps)
    out = Path(out_dir)
    _clear_previous(out)
    videos = out / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    classes = class_schedule(n, seed) + class_schedule(extra_test, seed, stream=1)
    total = n + extra_test
    jobs = [(i, seed, classes[i], tuple(size), tuple(duration), fps, str(videos)) for i in range(total)]
    workers = max(1, min(workers or os.cpu_count() or 1, total))
    if workers == 1:
        rows = [_make_clip(job) for job in jobs]
    else:
        with ProcessPoolExecutor(workers) as pool:
            rows = list(pool.map(_make_clip, jobs, chunksize=max(1, total // (8 * workers))))
    splits = _assign_splits(classes[:n], ratio) + ["test"] * extra_test
    counts: dict[str, dict[str, int]] = {}
    for name in _split_names(ratio):
        chosen = [row for row, split in zip(rows, splits, strict=True) if split == name]
        with (out / f"{name}.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(chosen)
        counts[name] = dict(sorted(Counter(row["Anomaly Class"] for row in chosen).items()))
    manifest = {
        "generator": "SynthVAU",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "n": n,
        "extra_test": extra_test,
        "split_ratio": list(ratio),
        "size": list(size),
        "duration": list(duration),
        "fps": fps,
        "classes": [*ANOMALY_CLASSES, NORMAL],
        "counts": counts,
    }
    (out / SYNTH_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return out
