"""`vaur1 serve`: a small web app where a person picks a model, uploads a video and reads its analysis.

    app = build_app({"demo": "runs/demo/grpo/best"}, spec_of=model_video_spec)   # a Starlette app
    uvicorn.run(app, host="127.0.0.1", port=7860)

The page shows the same view as `vaur1 analyze --out`: the frames the model saw, the predicted
interval on a timeline, the answers and every raw output. Each model is loaded once, on its first
video, and kept. A file that is not a readable video gets an error page with the one-line reason.
"""

from __future__ import annotations

import html
import tempfile
import threading
from pathlib import Path
from typing import Any

from vaur1.analyze import AnalyzeOptions, analyze_frames
from vaur1.errors import VaurError
from vaur1.eval.gallery import analysis_page
from vaur1.model.load import ModelConfig

MAX_UPLOAD_BYTES = 2 * 1024**3  # a surveillance clip, not a day of footage

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


def build_app(
    models: dict[str, str], spec_of: Any, options: AnalyzeOptions | None = None, device: str | None = None
):
    """The Starlette app serving `models` (name -> checkpoint); `spec_of(checkpoint)` gives the
    VideoSpec a model was trained with."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    from vaur1.eval.generators import load_generator
    from vaur1.video.decode import decode

    options = options or AnalyzeOptions()
    loaded: dict[str, Any] = {}
    lock = threading.Lock()  # one analysis at a time: the model is not shared between threads

    def generator_for(name: str):
        if name not in loaded:
            spec = spec_of(models[name])
            loaded[name] = (
                load_generator(ModelConfig(name_or_path=models[name], device=device), options.sampling, spec),
                spec,
            )
        return loaded[name]

    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse(form_page(list(models)))

    async def analyze(request: Request) -> HTMLResponse:
        async with request.form(max_part_size=MAX_UPLOAD_BYTES) as form:
            name = str(form.get("model") or next(iter(models)))
            upload = form.get("video")
            if name not in models or upload is None or not hasattr(upload, "read"):
                message = '<p class="error">error: choose a model and a video file</p>'
                return HTMLResponse(form_page(list(models), message), status_code=400)
            suffix = Path(upload.filename or "video.mp4").suffix or ".mp4"
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / f"{Path(upload.filename or 'video').stem}{suffix}"
                path.write_bytes(await upload.read())
                try:
                    with lock:
                        generator, spec = generator_for(name)
                        frames = decode(path, spec)
                        model = ModelConfig(name_or_path=models[name])
                        result = analyze_frames(frames, model, spec, options, generator)
                        page = analysis_page({**result, "video": upload.filename}, frames)
                except VaurError as err:
                    reason = str(err).replace(str(path), upload.filename or "the upload")
                    message = f'<p class="error">error: {html.escape(reason)}</p>'
                    return HTMLResponse(form_page(list(models), message), status_code=400)
        back = '<p><a href="/">analyze another video</a></p>'
        return HTMLResponse(page.replace("<body>", f"<body>{back}", 1))

    return Starlette(routes=[Route("/", index), Route("/analyze", analyze, methods=["POST"])])
