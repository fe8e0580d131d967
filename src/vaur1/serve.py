"""`vaur1 serve`: a small web app where a person picks a model, uploads a video and reads its analysis.

    app = build_app({"demo": "runs/demo/grpo/best"}, spec_of=model_video_spec)   # a Starlette app
    uvicorn.run(app, host="127.0.0.1", port=7860)

The page shows the same view as `vaur1 analyze --out`: the frames the model saw, the predicted
interval on a timeline, the answers and every raw output. A video `vaur1 analyze` would scan (longer
than a window, see `vaur1.eval.scan.needs_scan`) is scanned in the background instead: the upload is
answered at once with a page of its own (an unguessable address) that shows the windows done and
refreshes itself until the timeline is ready. Each model is loaded once, on its first video, and
kept. A file that is not a readable video gets an error page with the one-line reason.

It is safe to leave running on a shared machine: an upload is streamed to disk and refused (413)
past `ServeLimits.max_upload_bytes`, form fields are small, decoding has limits (`DecodeLimits`),
analyses run one at a time on a worker thread behind a bounded queue (a full queue answers 503
at once, and the page itself never waits for a model), requests naming another host are refused
(a web page elsewhere cannot reach the server through DNS rebinding) and so are uploads posted from
another origin.
"""

from __future__ import annotations

import asyncio
import html
import queue
import re
import secrets
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from vaur1.analyze import AnalyzeOptions, analyze_frames
from vaur1.errors import VaurError
from vaur1.eval.scan_config import ScanConfig
from vaur1.model.load import ModelConfig
from vaur1.present.gallery import analysis_page
from vaur1.video.decode import DecodeLimits

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}")
_CHUNK = 1024 * 1024


@dataclass
class ServeLimits:
    max_upload_bytes: int = 4 * 1024**3  # a long recording at surveillance quality
    max_field_bytes: int = 64 * 1024  # the form's other fields: a model's name
    max_waiting: int = (
        4  # analyses queued behind the one running (at least 1); more are told the server is busy
    )
    decode: DecodeLimits = field(default_factory=lambda: DecodeLimits(timeout_s=300.0))
    kept_scans: int = 32  # finished scans whose pages are kept (the oldest go first)


_FORM = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>vaur1 analyze</title>
<style>body {{ font-family: system-ui, sans-serif; margin: 2em; }} .error {{ color: #c33; }}</style></head>
<body><h1>vaur1: video anomaly analysis</h1>{message}
<form id="upload" action="/analyze" method="post" enctype="multipart/form-data">
<p><label>model <select name="model">{models}</select></label></p>
<p><label>video <input type="file" name="video" accept="video/*"></label></p>
<p><button id="go" type="submit">Analyze</button></p></form></body></html>
"""


def form_page(models: list[str], message: str = "") -> str:
    options = "".join(f"<option>{html.escape(name)}</option>" for name in models)
    return _FORM.format(models=options, message=message)


def shown_name(filename: str | None) -> str:
    """An uploaded file's name as the page shows it: printable, at most 100 characters."""
    name = "".join(c for c in (filename or "") if c.isprintable()).strip() or "the upload"
    return name if len(name) <= 100 else f"{name[:97]}..."


class UploadTooLarge(VaurError):
    pass


class AnalysisWorker:
    """One daemon thread runs the analyses one at a time (a model is not shared between threads); the
    event loop only awaits them, so the page answers while a model works, and a daemon thread never
    keeps the process alive after SIGTERM."""

    def __init__(self, max_waiting: int) -> None:
        self.jobs: queue.Queue = queue.Queue(maxsize=max_waiting)
        threading.Thread(target=self._run, name="vaur1-serve-worker", daemon=True).start()

    def submit(self, job: Callable[[], Any]) -> asyncio.Future | None:
        """A future of `job()`'s result, or None when the queue is full."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        try:
            self.jobs.put_nowait((job, future, loop))
        except queue.Full:
            return None
        return future

    def _run(self) -> None:
        while True:
            job, future, loop = self.jobs.get()
            if future.cancelled():  # the browser went away while this waited
                continue
            try:
                result, error = job(), None
            except Exception as err:  # handed to the request that asked, which answers with it
                result, error = None, err
            loop.call_soon_threadsafe(_settle, future, result, error)


def _settle(future: asyncio.Future, result: Any, error: Exception | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


@dataclass
class ScanJob:
    """A scan running in the background: what its page shows."""

    shown: str
    done: int = 0
    total: int | None = None
    page: str | None = None  # the finished timeline
    error: str | None = None


class ScanJobs:
    """The background scans by id; the oldest finished ones are forgotten past `kept`."""

    def __init__(self, kept: int) -> None:
        self.kept = kept
        self.jobs: dict[str, ScanJob] = {}

    def add(self, shown: str) -> tuple[str, ScanJob]:
        finished = [key for key, job in self.jobs.items() if job.page is not None or job.error is not None]
        for key in finished[: max(0, len(finished) - self.kept + 1)]:
            del self.jobs[key]
        key = secrets.token_urlsafe(16)
        self.jobs[key] = ScanJob(shown)
        return key, self.jobs[key]


def progress_page(job: ScanJob) -> str:
    """The page of a scan still running: windows done, refreshed every 2 s."""
    done = f"{job.done} of {job.total} windows" if job.total else "reading the video"
    value = f'value="{job.done}" max="{job.total}"' if job.total else ""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">'
        f"<title>vaur1 scan: {html.escape(job.shown)}</title></head><body><h1>scanning {html.escape(job.shown)}</h1>"
        f'<p><progress id="progress" {value}></progress> {done}</p>'
        "<p>This page refreshes itself; the timeline appears here when the scan ends.</p></body></html>"
    )


def allowed_hosts(host: str, extra: Sequence[str] = ()) -> list[str]:
    """The names a request may use for this server: loopback, the address it listens on (unless that is
    every address) and any named."""
    names = [*LOOPBACK_HOSTS, *extra]
    if host not in ("0.0.0.0", "::", ""):
        names.append(host)
    return list(dict.fromkeys(name.strip("[]").lower() for name in names))


def _hostname(value: str | None) -> str | None:
    """The host name of a Host header (`[::1]:7860` -> `::1`) or an Origin, lower case."""
    if not value:
        return None
    try:
        return urlsplit(value if "//" in value else f"//{value}").hostname
    except ValueError:
        return None


def build_app(
    models: dict[str, str],
    spec_of: Any,
    options: AnalyzeOptions | None = None,
    device: str | None = None,
    limits: ServeLimits | None = None,
    hosts: Sequence[str] = LOOPBACK_HOSTS,
    scan: ScanConfig | None = None,
):
    """The Starlette app serving `models` (name -> checkpoint); `spec_of(checkpoint)` gives the
    VideoSpec a model was trained with; `hosts` are the host names requests may carry; `scan` how long
    videos are scanned."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, RedirectResponse, Response
    from starlette.routing import Route

    from vaur1.model.generators import load_generator
    from vaur1.video.decode import decode

    options = options or AnalyzeOptions()
    limits = limits or ServeLimits()
    loaded: dict[str, Any] = {}
    worker = AnalysisWorker(limits.max_waiting)
    scans = ScanJobs(limits.kept_scans)
    scan_settings = scan or ScanConfig()
    scan_settings.validate()
    names = set(allowed_hosts("", hosts))

    def page(message: str, status: int) -> HTMLResponse:
        return HTMLResponse(form_page(list(models), f'<p class="error">{message}</p>'), status_code=status)

    def generator_for(name: str):
        if name not in loaded:
            spec = spec_of(models[name])
            loaded[name] = (
                load_generator(ModelConfig(name_or_path=models[name], device=device), options.sampling, spec),
                spec,
            )
        return loaded[name]

    def analysis(name: str, path: Path, shown: str) -> str:
        generator, spec = generator_for(name)
        frames = decode(path, spec, limits=limits.decode)
        result = analyze_frames(frames, ModelConfig(name_or_path=models[name]), spec, options, generator)
        return analysis_page({**result, "video": shown}, frames)

    def scan(name: str, folder: Path, path: Path, job: ScanJob) -> None:
        """The background job: the scan, its page, and the upload's folder removed whatever happens."""
        from vaur1.eval.scan import scan_video
        from vaur1.present.scan_page import event_frames, scan_page

        try:
            generator, spec = generator_for(name)

            def advance(done: int, total: int) -> None:
                job.done, job.total = done, total

            result = scan_video(
                path,
                generator,
                spec,
                scan_settings,
                options.prompts,
                limits=limits.decode,
                on_progress=advance,
            )
            frames = event_frames(path, spec, result, limits.decode)
            back = '<p><a href="/">analyze another video</a></p>'
            job.page = scan_page({**result, "video": job.shown}, frames).replace("<body>", f"<body>{back}", 1)
        except VaurError as err:
            job.error = str(err).replace(str(path), job.shown)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def needs_scan_for(name: str, path: Path) -> bool:
        from vaur1.eval.scan import needs_scan
        from vaur1.video.decode import probe

        return needs_scan(probe(path, limits.decode).duration, spec_of(models[name]), scan_settings.window)

    async def start_scan(name: str, upload, shown: str, suffix: str) -> Response:
        folder = Path(tempfile.mkdtemp(prefix="vaur1-scan-"))
        path = folder / f"upload{suffix}"
        await asyncio.to_thread(shutil.move, upload, path)  # out of the request's folder, removed on return
        key, job = scans.add(shown)
        if worker.submit(lambda: scan(name, folder, path, job)) is None:
            shutil.rmtree(folder, ignore_errors=True)
            del scans.jobs[key]
            return page(f"busy: {limits.max_waiting} videos are waiting; try again in a minute", 503)
        return RedirectResponse(f"/scans/{key}", status_code=303)

    async def scan_status(request: Request) -> HTMLResponse:
        refused = foreign(request)
        if refused is not None:
            return refused
        job = scans.jobs.get(request.path_params["key"])
        if job is None:
            return page("error: no such scan (finished scans are kept for a while, then forgotten)", 404)
        if job.error is not None:
            return page(f"error: {html.escape(job.error)}", 400)
        return HTMLResponse(job.page if job.page is not None else progress_page(job))

    def foreign(request: Request) -> HTMLResponse | None:
        """A refusal for a request that names another host, or posts from another site's page."""
        if _hostname(request.headers.get("host")) not in names:
            return HTMLResponse("error: this server answers to its own host names only", status_code=400)
        origin = request.headers.get("origin")
        if request.method == "POST" and origin is not None and _hostname(origin) not in names:
            return page("error: uploads are taken from this server's own page only", 403)
        return None

    async def index(request: Request) -> HTMLResponse:
        return foreign(request) or HTMLResponse(form_page(list(models)))

    async def analyze(request: Request) -> HTMLResponse:
        refused = foreign(request)
        if refused is not None:
            return refused
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.max_upload_bytes:
            return page(f"error: the upload exceeds {limits.max_upload_bytes:,} bytes", 413)
        received = 0

        async def receive():  # the body counted as it streams in, whatever the headers said
            nonlocal received
            message = await request.receive()
            received += len(message.get("body", b""))
            if received > limits.max_upload_bytes:
                raise UploadTooLarge(f"the upload exceeds {limits.max_upload_bytes:,} bytes")
            return message

        with tempfile.TemporaryDirectory(prefix="vaur1-serve-") as folder:
            try:
                async with Request(request.scope, receive).form(
                    max_files=1, max_fields=4, max_part_size=limits.max_field_bytes
                ) as form:
                    name = str(form.get("model") or next(iter(models)))
                    upload = form.get("video")
                    if name not in models or upload is None or not hasattr(upload, "read"):
                        return page("error: choose a model and a video file", 400)
                    shown = shown_name(upload.filename)
                    suffix = Path(shown).suffix if _SUFFIX.fullmatch(Path(shown).suffix) else ".mp4"
                    path = Path(folder) / f"upload{suffix}"
                    with path.open("wb") as handle:  # the spooled upload copied in chunks, never whole
                        await asyncio.to_thread(shutil.copyfileobj, upload.file, handle, _CHUNK)
            except UploadTooLarge as err:
                return page(f"error: {html.escape(str(err))}", 413)
            except HTTPException as err:  # Starlette's answer to a field past max_part_size, a bad body
                return page(f"error: {html.escape(str(err.detail))}", err.status_code)
            try:
                long_video = await asyncio.to_thread(needs_scan_for, name, path)
            except VaurError as err:
                return page(f"error: {html.escape(str(err).replace(str(path), shown))}", 400)
            if long_video:
                return await start_scan(name, path, shown, suffix)
            future = worker.submit(lambda: analysis(name, path, shown))
            if future is None:
                return page(f"busy: {limits.max_waiting} videos are waiting; try again in a minute", 503)
            try:
                result = await future
            except VaurError as err:
                reason = str(err).replace(str(path), shown)
                return page(f"error: {html.escape(reason)}", 400)
        back = '<p><a href="/">analyze another video</a></p>'
        return HTMLResponse(result.replace("<body>", f"<body>{back}", 1))

    return Starlette(
        routes=[
            Route("/", index),
            Route("/analyze", analyze, methods=["POST"]),
            Route("/scans/{key}", scan_status),
        ]
    )
