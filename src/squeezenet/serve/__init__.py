"""Serve a SqueezeNet over HTTP (``squeezenet serve``, the ``squeezenet[serve]`` extra).

TorchServe's image-classifier endpoint, the Open Inference Protocol (KServe v2), Prometheus metrics and a page
to drop images on, with dynamic batching, on Starlette and uvicorn.
"""

from ..extras import require

for _module in ("starlette", "uvicorn", "python_multipart", "prometheus_client"):
    require(_module, "squeezenet serve")

from .app import ServeSettings, create_app  # noqa: E402
from .run import ServeOptions, build_app, serve  # noqa: E402

__all__ = ["ServeOptions", "ServeSettings", "build_app", "create_app", "serve"]
