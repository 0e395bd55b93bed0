"""Optional toolkits: exporters, runtimes and plotting are pip extras, imported only by the code that needs them.

A core install loads, trains and evaluates. ONNX export and ONNX Runtime
(``squeezenet[onnx]``), OpenVINO and NNCF (``squeezenet[openvino]``),
matplotlib (``squeezenet[plot]``), huggingface_hub (``squeezenet[hub]``,
for ``hf-hub:`` names) and the on-device toolkits (``squeezenet[executorch]``,
``[litert]``, ``[ncnn]``) and the HTTP server (``squeezenet[serve]``) come as extras; ``require`` turns a
missing one into a single line that names the extra to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingExtraError, one_line

EXTRA_OF = {  # top-level module -> the extra that installs it (pyproject.toml's optional-dependencies)
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "onnxscript": "onnx",
    "openvino": "openvino",
    "nncf": "openvino",
    "matplotlib": "plot",
    "tensorboard": "tensorboard",
    "huggingface_hub": "hub",
    "executorch": "executorch",
    "torchao": "executorch",
    "litert_torch": "litert",
    "ai_edge_litert": "litert",
    "ncnn": "ncnn",
    "pnnx": "ncnn",
    "starlette": "serve",
    "uvicorn": "serve",
    "python_multipart": "serve",
    "prometheus_client": "serve",
}


def require(module: str, purpose: str) -> ModuleType:
    """``module`` imported, or MissingExtraError: "<purpose> needs the <extra> extra (why): pip install ..."."""
    package = module.partition(".")[0]
    try:
        importlib.import_module(package)  # first: a submodule imported earlier would hide a package gone since
        return importlib.import_module(module)
    except ImportError as error:
        extra = EXTRA_OF.get(package, package)
        raise MissingExtraError(f"{purpose} needs the {extra} extra ({one_line(error)}): "
                                f"pip install 'squeezenet[{extra}]'") from None
