"""The HTTP app: TorchServe-style predictions, the Open Inference Protocol (KServe v2), metrics and a page.

Routes (``{model}`` is the served name, ``--name``)::

    POST /predictions/{model}        an image body, or a multipart form of several -> top-k {label: probability}
    GET  /v2/health/live, /v2/health/ready, /v2, /v2/models/{model}, /v2/models/{model}/ready
    POST /v2/models/{model}/infer    an FP32 tensor or BYTES (base64) image files -> logits / probabilities
    GET  /metrics                    Prometheus text
    GET  /                           a page to drop images on

Decoding runs in worker threads (at most one per core), the model in one
thread of its own behind the Batcher; the event loop only moves bytes. Every
refusal is a 4xx with ``{"error": "<one line>"}``; a model failure a 500,
logged; neither stops the server.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import anyio
import numpy as np
import torch
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from ..deploy.backends import Classifier
from ..errors import SqueezeNetError, one_line
from ..evaluate import as_function
from .batching import Batcher, ModelFailure
from .metrics import Metrics
from .protocol import (
    ClientError,
    decode_pixels,
    infer_answer,
    input_shape,
    model_metadata,
    parse_infer,
    topk_answers,
    topk_query,
)

log = logging.getLogger("squeezenet.serve")
MAX_FILES = 256  # images in one multipart form
RAW_IMAGE_TYPES = ("", "application/octet-stream",
                   "application/x-www-form-urlencoded")  # curl --data-binary's default, which TorchServe takes too


@dataclass(frozen=True)
class ServeSettings:
    name: str = "squeezenet"
    platform: str = "squeezenet-pytorch"  # the v2 metadata's "platform": which runtime answers
    max_batch: int = 16
    max_wait_ms: float = 5.0
    max_body_mb: float = 20.0

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class Server:
    """One served model: its batcher, metrics and the route handlers. ``thread`` is the one thread that runs
    torch (see batching); a model loaded in it, as ``build_app`` does, keeps every parallel kernel there."""

    def __init__(self, model: Classifier, settings: ServeSettings,
                 thread: concurrent.futures.ThreadPoolExecutor | None = None) -> None:
        meta = model.meta
        if meta is None:
            raise SqueezeNetError("the model carries no metadata (spec, preprocessing); serve needs a SqueezeNet "
                                  "or a file exported by `squeezenet export`")
        self.model, self.meta, self.settings = model, meta, settings
        self.recipe = meta.preprocessing
        self.labels = meta.labels
        self.shape = input_shape(meta)
        self.thread = thread or model_thread()
        self.metrics = Metrics()
        self.decoders = anyio.CapacityLimiter(os.cpu_count() or 1)
        self.ready = False
        self.batcher: Batcher | None = None
        self.page = resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8") \
            .replace("{{MODEL}}", settings.name)

    # -- life --------------------------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        with as_function(self.model) as forward:
            def run(images: list[torch.Tensor]) -> np.ndarray:
                """In the model thread: uint8 pixels normalised, stacked with preprocessed tensors, one pass. A
                batch of pixels only (the usual case; /infer tensors are already normalised) is normalised in
                one call: for 16 v1.1 crops 1.9 ms against 5.8 image by image, in the thread that is the
                server's bottleneck."""
                with torch.inference_mode():
                    if all(image.dtype == torch.uint8 for image in images):
                        batch = self.recipe.normalize(torch.stack(images))
                    else:
                        batch = torch.stack([self.recipe.normalize(image) if image.dtype == torch.uint8 else image
                                             for image in images])
                    return forward(batch).numpy()

            await loop.run_in_executor(self.thread, lambda: run([torch.zeros(self.shape)]))  # the slow first call
            self.batcher = Batcher(run, self.thread, max_batch=self.settings.max_batch,
                                   max_wait_ms=self.settings.max_wait_ms, on_batch=self.metrics.batch,
                                   on_queue=self.metrics.queue_depth.set)
            self.batcher.start()
            self.ready = True
            try:
                yield
            finally:
                self.ready = False
                await self.batcher.stop()
                self.thread.shutdown(wait=True)

    def app(self) -> Starlette:
        def measured(template: str, handler: Callable[[Request], Awaitable[Response]]) -> Callable:
            async def endpoint(request: Request) -> Response:
                started = time.perf_counter()
                self.metrics.in_progress.inc()
                try:
                    response = await handler(request)
                except ClientError as error:
                    response = _error(error.status, str(error))
                except ModelFailure as error:
                    log.error("%s %s: %s", request.method, request.url.path, error)
                    response = _error(500, str(error))
                except Exception as error:  # the server outlives any one request
                    log.exception("%s %s failed", request.method, request.url.path)
                    response = _error(500, f"internal error: {one_line(error)}")
                finally:
                    self.metrics.in_progress.dec()
                self.metrics.answered(template, response.status_code, time.perf_counter() - started)
                return response
            return endpoint

        routes = [
            ("/", self.page_view, ["GET"]),
            ("/predictions/{model}", self.predictions, ["POST", "PUT"]),
            ("/ping", self.ping, ["GET"]),
            ("/v2", self.server_metadata, ["GET"]),
            ("/v2/health/live", self.live, ["GET"]),
            ("/v2/health/ready", self.ready_view, ["GET"]),
            ("/v2/models/{model}", self.metadata, ["GET"]),
            ("/v2/models/{model}/ready", self.ready_view, ["GET"]),
            ("/v2/models/{model}/infer", self.infer, ["POST"]),
            ("/metrics", self.metrics_view, ["GET"]),
        ]
        return Starlette(
            routes=[Route(path, measured(path, handler), methods=methods) for path, handler, methods in routes],
            exception_handlers={HTTPException: self._http_error}, lifespan=self.lifespan)

    async def _http_error(self, request: Request, error: HTTPException) -> Response:  # 404, 405 from the router
        return _error(error.status_code, f"{request.method} {request.url.path[:200]}: {error.detail}")

    # -- reading requests --------------------------------------------------------------------------------------------

    def _model(self, request: Request) -> None:
        name = request.path_params.get("model")
        if name is not None and name != self.settings.name:
            raise ClientError(404, f"model {name[:80]!r} is not served here (this server serves "
                                   f"{self.settings.name!r})")

    async def _body(self, request: Request) -> bytes:
        """The request body, refused with 413 as soon as it passes --max-body-mb (read or declared)."""
        limit = self.settings.max_body_bytes
        over = f"over the limit of {self.settings.max_body_mb:g} MB (--max-body-mb)"
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ClientError(413, f"request body of {int(declared):,} bytes is {over}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ClientError(413, f"request body is {over}")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _uploads(self, request: Request) -> tuple[list[tuple[str, bytes]], bool]:
        """The images of a predictions request, and whether it was a form (answered with a list)."""
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "multipart/form-data" and not content_type.startswith("image/") \
                and content_type not in RAW_IMAGE_TYPES:
            raise ClientError(415, f"content type {content_type[:60]!r} is not an image or multipart/form-data")
        body = await self._body(request)
        if content_type != "multipart/form-data":
            if not body:
                raise ClientError(400, "empty request body; send an image file")
            return [("uploaded image", body)], False

        async def replay() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(request.scope, replay).form(max_files=MAX_FILES, max_fields=MAX_FILES,
                                                             max_part_size=self.settings.max_body_bytes)
        except (HTTPException, MultiPartException) as error:
            detail = error.detail if isinstance(error, HTTPException) else error.message
            raise ClientError(400, f"malformed multipart form: {detail}") from None
        uploads = []
        for field, value in form.multi_items():
            if isinstance(value, UploadFile):
                uploads.append((f"upload {value.filename or field!r}"[:200], await value.read()))
        await form.close()
        if not uploads:
            raise ClientError(400, "the multipart form holds no files; send images as file fields")
        return uploads, True

    def _batcher(self) -> Batcher:
        if self.batcher is None or not self.ready:
            raise ClientError(503, "the model is not ready")
        return self.batcher

    async def _classify(self, uploads: list[tuple[str, bytes]]) -> np.ndarray:
        batcher = self._batcher()
        with batcher.expecting(len(uploads)):
            pixels = await anyio.to_thread.run_sync(decode_pixels, uploads, self.recipe, limiter=self.decoders)
        return await batcher.submit(pixels)  # no await between: the expected images are queued at once

    # -- routes ------------------------------------------------------------------------------------------------------

    async def page_view(self, request: Request) -> Response:
        return HTMLResponse(self.page)

    async def predictions(self, request: Request) -> Response:
        self._model(request)
        topk = topk_query(request.query_params.get("topk"))
        uploads, form = await self._uploads(request)
        answers = topk_answers(await self._classify(uploads), self.labels, topk)
        return JSONResponse(answers if form else answers[0])

    async def ping(self, request: Request) -> Response:
        return JSONResponse({"status": "Healthy" if self.ready else "Unhealthy"}, status_code=200 if self.ready
                            else 503)

    async def server_metadata(self, request: Request) -> Response:
        from .. import __version__

        return JSONResponse({"name": "squeezenet", "version": __version__, "extensions": ["classification"]})

    async def live(self, request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready_view(self, request: Request) -> Response:
        self._model(request)
        return JSONResponse({"ready": self.ready}, status_code=200 if self.ready else 503)

    async def metadata(self, request: Request) -> Response:
        self._model(request)
        return JSONResponse(model_metadata(self.settings.name, self.meta, self.settings.platform))

    async def infer(self, request: Request) -> Response:
        self._model(request)
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in ("", "application/json"):
            raise ClientError(415, f"content type {content_type[:60]!r}: the infer request is application/json")
        body = await self._body(request)
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError too
            raise ClientError(400, f"the body is not valid JSON ({one_line(error, 120)})") from None
        batcher = self._batcher()
        with batcher.expecting(1):
            infer = await anyio.to_thread.run_sync(parse_infer, parsed, self.meta, limiter=self.decoders)
        scores = await (batcher.submit(infer.tensor) if infer.tensor is not None else self._classify(infer.images))
        return JSONResponse(infer_answer(self.settings.name, infer, scores, self.labels))

    async def metrics_view(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=self.metrics.content_type)


def model_thread() -> concurrent.futures.ThreadPoolExecutor:
    return concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="squeezenet-model")


def create_app(model: Classifier, settings: ServeSettings | None = None,
               thread: concurrent.futures.ThreadPoolExecutor | None = None) -> Starlette:
    """The ASGI app serving ``model`` (a SqueezeNet or a backend), for uvicorn or any ASGI server. ``thread``:
    the single-thread executor the model was loaded in (``model_thread()``), if it was."""
    return Server(model, settings or ServeSettings(), thread).app()
