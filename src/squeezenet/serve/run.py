"""``squeezenet serve``: load the model, check the options, run the app on uvicorn.

Options are checked, the model loaded and the port tried before uvicorn
starts, so a bad flag, file or busy port is one line, not a server log.
With ``--workers N`` uvicorn starts N processes, each loading the model
from the options passed in an environment variable; each process has its
own batcher and its own /metrics.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import sys
from dataclasses import dataclass

from starlette.applications import Starlette

from ..deploy.backends import Classifier
from ..errors import SqueezeNetError
from .app import ServeSettings, create_app, model_thread

OPTIONS_VARIABLE = "SQUEEZENET_SERVE_OPTIONS"  # how the options reach uvicorn's worker processes
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
LIMITS = {  # option: (lowest, highest), checked before anything loads
    "port": (0, 65535), "max_batch": (1, 1024), "max_wait_ms": (0, 10_000), "workers": (1, 64),
    "max_body_mb": (0.001, 1024), "graceful_seconds": (0, 3600),
}


@dataclass(frozen=True)
class ServeOptions:
    weights: str
    backend: str = "pytorch"
    arch: str | None = None
    preprocess: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    name: str = "squeezenet"
    max_batch: int = 16
    max_wait_ms: float = 5.0
    workers: int = 1
    max_body_mb: float = 20.0
    max_image_pixels: int | None = None
    access_log: bool = True
    graceful_seconds: float = 30.0  # SIGTERM: how long in-flight requests may take to finish

    def check(self) -> None:
        if not NAME.fullmatch(self.name):
            raise SqueezeNetError(f"--name {self.name!r}: use 1-64 letters, digits, '.', '_' or '-' "
                                  "(it is part of every URL)")
        for option, (low, high) in LIMITS.items():
            value = getattr(self, option)
            if not low <= value <= high:
                raise SqueezeNetError(f"--{option.replace('_', '-')} must be between {low:g} and {high:g}, "
                                      f"got {value:g}")


def build_app(options: ServeOptions) -> Starlette:
    """The app for ``options``: the model loaded on its backend in the thread that will run it (its threads
    shared among the workers)."""
    from ..deploy import inference_model
    from ..images import set_max_image_pixels

    options.check()
    set_max_image_pixels(options.max_image_pixels)

    def load() -> Classifier:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // options.workers))  # OpenMP's count is per thread
        return inference_model(options.weights, options.backend, arch=options.arch, preprocess=options.preprocess)

    thread = model_thread()
    try:
        model = thread.submit(load).result()
    except BaseException:
        thread.shutdown()
        raise
    settings = ServeSettings(name=options.name, platform=f"squeezenet-{getattr(model, 'name', 'pytorch')}",
                             max_batch=options.max_batch, max_wait_ms=options.max_wait_ms,
                             max_body_mb=options.max_body_mb)
    return create_app(model, settings, thread)


def app_from_environment() -> Starlette:
    """uvicorn's factory in each worker process (``--workers`` > 1)."""
    return build_app(ServeOptions(**json.loads(os.environ[OPTIONS_VARIABLE])))


def _check_port(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise SqueezeNetError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None


def serve(options: ServeOptions) -> None:
    """Serve until SIGINT/SIGTERM; both drain the requests in flight (up to ``graceful_seconds``), then exit."""
    import uvicorn

    app = build_app(options)  # loads the model here: a bad file is one line before anything listens
    _check_port(options.host, options.port)
    print(f"squeezenet serve: {options.name!r} on http://{options.host}:{options.port}/ (backend "
          f"{options.backend}, batches of up to {options.max_batch} images, waiting up to {options.max_wait_ms:g} ms)",
          file=sys.stderr, flush=True)
    common = {"host": options.host, "port": options.port, "access_log": options.access_log,
              "timeout_graceful_shutdown": options.graceful_seconds, "log_level": "info"}
    if options.workers == 1:
        uvicorn.run(app, **common)
        return
    os.environ[OPTIONS_VARIABLE] = json.dumps(dataclasses.asdict(options))
    uvicorn.run(f"{__name__}:app_from_environment", factory=True, workers=options.workers, **common)
