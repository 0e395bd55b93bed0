"""`squeezenet serve`: the real server on a loopback port, the real Caffe v1.1 weights, real images.

Every endpoint is called over HTTP; answers are checked against `squeezenet predict` and the model itself; every
bad input gets its 4xx and the next request is served; SIGTERM drains; the page runs in Debian's chromium.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import squeezenet as sq
from squeezenet.errors import SqueezeNetError

from .conftest import shared_path, tiny_model

pytest.importorskip("starlette", reason="squeezenet[serve] is not installed")
pytest.importorskip("uvicorn", reason="squeezenet[serve] is not installed")

from squeezenet.serve import ServeOptions, ServeSettings, create_app
from squeezenet.serve.batching import Batcher, ModelFailure
from squeezenet.serve.protocol import ClientError, parse_infer, torchserve_answer

WEIGHTS = "weights/caffe_v1.1/squeezenet_v1.1.caffemodel"
SAMPLES = "data/imagenet-samples"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def call(port: int, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def call_json(port: int, method: str, path: str, body: bytes | None = None,
              headers: dict[str, str] | None = None) -> tuple[int, object]:
    status, _, data = call(port, method, path, body, headers)
    return status, json.loads(data)


def multipart(files: list[tuple[str, bytes]], boundary: str = "squeezenet-test-boundary") -> tuple[bytes, str]:
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="{name}"\r\n'
             f"Content-Type: image/jpeg\r\n\r\n".encode() + data + b"\r\n" for name, data in files]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def wait_ready(port: int, process: subprocess.Popen | None = None, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}: {process.stderr.read()[-2000:]}")
        with contextlib.suppress(OSError):
            if call(port, "GET", "/v2/health/ready", timeout=2)[0] == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"the server on port {port} was not ready in {seconds} s")


@contextlib.contextmanager
def running_server(*flags: str) -> Iterator[tuple[int, subprocess.Popen]]:
    port = free_port()
    command = [sys.executable, "-m", "squeezenet", "serve", "--weights", str(shared_path(WEIGHTS)),
               "--port", str(port), "--no-access-log", *flags]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_ready(port, process)
        yield port, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    with running_server("--max-wait-ms", "30", "--max-body-mb", "3") as (port, _):
        yield port


@pytest.fixture(scope="module")
def photos() -> list[Path]:
    return sorted(shared_path(SAMPLES).glob("*.JPEG"))[::50][:10]  # ten classes spread over the samples


@pytest.fixture(scope="module")
def cli_top1(photos: list[Path]) -> dict[str, str]:
    """`squeezenet predict --json` on the same files: what every endpoint must agree with."""
    result = subprocess.run([sys.executable, "-m", "squeezenet", "predict", *map(str, photos), "--weights",
                             str(shared_path(WEIGHTS)), "--json", "--topk", "1"],
                            capture_output=True, text=True, check=True)
    return {Path(entry["image"]).name: entry["predictions"][0]["name"] for entry in json.loads(result.stdout)}


# -- the endpoints ---------------------------------------------------------------------------------------------------


def test_predictions_agree_with_the_cli(server: int, photos: list[Path], cli_top1: dict[str, str]) -> None:
    for photo in photos:
        status, answer = call_json(server, "POST", "/predictions/squeezenet", photo.read_bytes(),
                                   {"Content-Type": "image/jpeg"})
        assert status == 200, answer
        assert len(answer) == 5
        probabilities = list(answer.values())
        assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1 + 1e-6
        assert next(iter(answer)) == cli_top1[photo.name], photo.name
    status, answer = call_json(server, "PUT", "/predictions/squeezenet?topk=2", photos[0].read_bytes())  # curl -T
    assert status == 200 and next(iter(answer)) == cli_top1[photos[0].name] and len(answer) == 2


def test_a_multipart_form_of_several_images(server: int, photos: list[Path], cli_top1: dict[str, str]) -> None:
    body, content_type = multipart([(photo.name, photo.read_bytes()) for photo in photos[:4]])
    status, answers = call_json(server, "POST", "/predictions/squeezenet?topk=3", body, {"Content-Type": content_type})
    assert status == 200, answers
    assert [next(iter(answer)) for answer in answers] == [cli_top1[photo.name] for photo in photos[:4]]
    assert all(len(answer) == 3 for answer in answers)


def test_health_and_metadata(server: int) -> None:
    assert call_json(server, "GET", "/v2/health/live") == (200, {"live": True})
    assert call_json(server, "GET", "/v2/health/ready") == (200, {"ready": True})
    assert call_json(server, "GET", "/v2/models/squeezenet/ready") == (200, {"ready": True})
    assert call_json(server, "GET", "/ping") == (200, {"status": "Healthy"})
    status, server_meta = call_json(server, "GET", "/v2")
    assert status == 200 and "classification" in server_meta["extensions"]
    status, meta = call_json(server, "GET", "/v2/models/squeezenet")
    assert status == 200 and meta["name"] == "squeezenet" and meta["platform"] == "squeezenet-pytorch"
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 227, 227]}]
    assert [output["shape"] for output in meta["outputs"]] == [[-1, 1000], [-1, 1000]]
    assert meta["parameters"]["preprocessing"]["channel_order"] == "BGR"  # the Caffe recipe, carried by the file
    assert len(meta["parameters"]["class_names"]) == 1000 and meta["parameters"]["class_names"][0].startswith("tench")


def test_v2_infer_with_a_tensor_equals_the_model(server: int, photos: list[Path]) -> None:
    model = sq.load(shared_path(WEIGHTS))
    batch = torch.stack([model.meta.preprocessing(Image.open(photo).convert("RGB")) for photo in photos[:2]])
    with torch.inference_mode():
        expected = model.eval()(batch)
    request = {"id": "two", "inputs": [{"name": "input", "datatype": "FP32", "shape": list(batch.shape),
                                        "data": batch.flatten().tolist()}]}
    status, answer = call_json(server, "POST", "/v2/models/squeezenet/infer", json.dumps(request).encode(),
                               {"Content-Type": "application/json"})
    assert status == 200, answer
    assert answer["id"] == "two" and answer["model_name"] == "squeezenet"
    outputs = {output["name"]: output for output in answer["outputs"]}
    logits = torch.tensor(outputs["logits"]["data"]).reshape(outputs["logits"]["shape"])
    assert torch.allclose(logits, expected, atol=1e-4 * float(expected.abs().max()))
    probabilities = torch.tensor(outputs["probabilities"]["data"]).reshape(2, 1000)
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(2), atol=1e-4)


def test_v2_infer_with_image_bytes_and_classification(server: int, photos: list[Path],
                                                      cli_top1: dict[str, str]) -> None:
    images = [base64.b64encode(photo.read_bytes()).decode() for photo in photos[:3]]
    request = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [3], "data": images}],
               "outputs": [{"name": "probabilities", "parameters": {"classification": 2}}]}
    status, answer = call_json(server, "POST", "/v2/models/squeezenet/infer", json.dumps(request).encode())
    assert status == 200, answer
    (output,) = answer["outputs"]
    assert output["datatype"] == "BYTES" and output["shape"] == [3, 2]
    best = output["data"][::2]  # "value:index:label", the top of each row first
    assert [cell.split(":", 2)[2] for cell in best] == [cli_top1[photo.name] for photo in photos[:3]]
    assert all(0 < float(cell.split(":")[0]) <= 1 for cell in output["data"])


def test_dynamic_batching_groups_concurrent_requests(server: int, photos: list[Path],
                                                     cli_top1: dict[str, str]) -> None:
    def metric(text: str, name: str) -> float:
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))

    before = call(server, "GET", "/metrics")[2].decode()
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda photo: call_json(server, "POST", "/predictions/squeezenet?topk=1",
                                                        photo.read_bytes()), photos + photos))
    after = call(server, "GET", "/metrics")[2].decode()
    assert [next(iter(answer)) for _, answer in answers] == [cli_top1[photo.name] for photo in photos + photos]
    batches = metric(after, "squeezenet_batch_size_count") - metric(before, "squeezenet_batch_size_count")
    images = metric(after, "squeezenet_batch_size_sum") - metric(before, "squeezenet_batch_size_sum")
    assert images == 20 and batches < 20, (batches, images)  # some images shared a forward pass


def test_metrics_count_requests_errors_and_batches(server: int, photos: list[Path]) -> None:
    call(server, "POST", "/predictions/squeezenet", photos[0].read_bytes())
    call(server, "POST", "/predictions/squeezenet", b"not an image")
    status, headers, body = call(server, "GET", "/metrics")
    text = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert 'squeezenet_requests_total{code="200",endpoint="/predictions/{model}"}' in text
    assert 'squeezenet_request_errors_total{code="400",endpoint="/predictions/{model}"}' in text
    for name in ("squeezenet_request_seconds_bucket", "squeezenet_batch_size_bucket", "squeezenet_queue_depth",
                 "squeezenet_images_total", "squeezenet_inference_seconds_count"):
        assert name in text, name


def test_the_page_is_served(server: int) -> None:
    status, headers, body = call(server, "GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'data-model="squeezenet"' in body and b'id="file"' in body


# -- bad input: a 4xx with one line, and the server goes on ----------------------------------------------------------


def bomb_png() -> bytes:
    """A 10000x10000 picture (100 megapixels, over Pillow's limit) in about 12 KB."""
    buffer = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buffer, format="PNG")
    return buffer.getvalue()


BAD_REQUESTS = [  # (what, method, path, body, content type, status, a word the error must hold)
    ("truncated JPEG", "POST", "/predictions/squeezenet", "truncated", "image/jpeg", 400, "truncated"),
    ("text as an image", "POST", "/predictions/squeezenet", b"hello, world", "image/jpeg", 400, "not an image"),
    ("wrong content type", "POST", "/predictions/squeezenet", "photo", "text/plain", 415, "content type"),
    ("empty body", "POST", "/predictions/squeezenet", b"", "image/jpeg", 400, "empty"),
    ("over --max-body-mb", "POST", "/predictions/squeezenet", b"\xff" * (4 << 20), "image/jpeg", 413, "limit"),
    ("decompression bomb", "POST", "/predictions/squeezenet", "bomb", "image/png", 400, "decompression bomb"),
    ("malformed multipart", "POST", "/predictions/squeezenet", b"--x\r\nno headers", "multipart/form-data", 400,
     "multipart"),
    ("a form without files", "POST", "/predictions/squeezenet",
     b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--b--\r\n', "multipart/form-data; boundary=b",
     400, "no files"),
    ("topk not a number", "POST", "/predictions/squeezenet?topk=many", "photo", "image/jpeg", 400, "topk"),
    ("topk zero", "POST", "/predictions/squeezenet?topk=0", "photo", "image/jpeg", 400, "topk"),
    ("unknown model", "POST", "/predictions/resnet", "photo", "image/jpeg", 404, "not served"),
    ("unknown route", "GET", "/nothing/here", None, None, 404, "/nothing/here"),
    ("wrong method", "GET", "/predictions/squeezenet", None, None, 405, "GET"),
    ("infer: not JSON", "POST", "/v2/models/squeezenet/infer", b"{inputs", "application/json", 400, "JSON"),
    ("infer: nesting bomb", "POST", "/v2/models/squeezenet/infer", b"[" * 100_000, "application/json", 400, "JSON"),
    ("infer: wrong content type", "POST", "/v2/models/squeezenet/infer", b"{}", "text/csv", 415, "application/json"),
    ("infer: no inputs", "POST", "/v2/models/squeezenet/infer", {"outputs": []}, None, 400, "inputs"),
    ("infer: wrong shape", "POST", "/v2/models/squeezenet/infer",
     {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 224, 224], "data": [0.0]}]}, None, 400,
     "227"),
    ("infer: wrong datatype", "POST", "/v2/models/squeezenet/infer",
     {"inputs": [{"name": "input", "datatype": "INT64", "shape": [1, 3, 227, 227], "data": [0]}]}, None, 400,
     "datatype"),
    ("infer: too few numbers", "POST", "/v2/models/squeezenet/infer",
     {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 227, 227], "data": [0.0] * 10}]}, None, 400,
     "holds 10"),
    ("infer: text among numbers", "POST", "/v2/models/squeezenet/infer",
     {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 227, 227], "data": ["x"]}]}, None, 400,
     "only numbers"),
    ("infer: NaN", "POST", "/v2/models/squeezenet/infer", b'{"inputs": [{"name": "input", "datatype": "FP32", '
     b'"shape": [1, 3, 227, 227], "data": [NaN' + b", 0" * (3 * 227 * 227 - 1) + b"]}]}", "application/json", 400,
     "NaN"),
    ("infer: bad base64", "POST", "/v2/models/squeezenet/infer",
     {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["%%%"]}]}, None, 400, "base64"),
    ("infer: a bad image among good", "POST", "/v2/models/squeezenet/infer",
     {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2], "data": ["photo", "aGVsbG8="]}]}, None, 400,
     "input image 1"),
    ("infer: unknown output", "POST", "/v2/models/squeezenet/infer",
     {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["photo"]}],
      "outputs": [{"name": "features"}]}, None, 400, "unknown output"),
    ("infer: classification zero", "POST", "/v2/models/squeezenet/infer",
     {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["photo"]}],
      "outputs": [{"name": "logits", "parameters": {"classification": 0}}]}, None, 400, "classification"),
]


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=[case[0] for case in BAD_REQUESTS])
def test_bad_input_is_a_4xx_then_the_next_request_is_served(server: int, photos: list[Path], case: tuple) -> None:
    _, method, path, body, content_type, expected, word = case
    photo = photos[0].read_bytes()
    encoded = base64.b64encode(photo).decode()
    stand_ins = {"truncated": photo[: len(photo) // 2], "photo": photo, "bomb": bomb_png()}
    if isinstance(body, str):
        body = stand_ins[body]
    if isinstance(body, dict):
        for given in body.get("inputs", []):
            given["data"] = [encoded if item == "photo" else item for item in given["data"]]
        body, content_type = json.dumps(body).encode(), "application/json"
    status, headers, data = call(server, method, path, body, {"Content-Type": content_type} if content_type else {})
    assert status == expected, data[:300]
    assert headers["content-type"] == "application/json"
    error = json.loads(data)["error"]
    assert "\n" not in error and len(error) < 400 and word.lower() in error.lower(), error
    assert "Traceback" not in error
    assert call(server, "POST", "/predictions/squeezenet?topk=1", photo)[0] == 200


def test_a_model_failure_is_a_500_and_the_server_goes_on(tmp_path: Path) -> None:
    import uvicorn

    class Flaky:
        """A backend that fails on demand (after the warm-up)."""

        def __init__(self) -> None:
            self.model, self.fail = tiny_model().eval(), False
            self.meta = self.model.meta.replace(preprocessing=sq.get_preprocessing("torchvision").replace(
                resize=40, crop=32))

        def __call__(self, batch: torch.Tensor) -> torch.Tensor:
            if self.fail:
                raise RuntimeError("simulated runtime crash\nwith a second line")
            return self.model(batch)

    flaky, port = Flaky(), free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(flaky, ServeSettings(max_wait_ms=0)), host="127.0.0.1",
                                           port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_ready(port, seconds=30)
        buffer = io.BytesIO()
        Image.new("RGB", (48, 48), (200, 30, 30)).save(buffer, format="PNG")
        assert call(port, "POST", "/predictions/squeezenet", buffer.getvalue())[0] == 200
        flaky.fail = True
        status, _, data = call(port, "POST", "/predictions/squeezenet", buffer.getvalue())
        assert status == 500 and json.loads(data)["error"] == ("the model failed on a batch of 1: simulated runtime "
                                                               "crash with a second line")
        flaky.fail = False
        assert call(port, "POST", "/predictions/squeezenet", buffer.getvalue())[0] == 200
    finally:
        server.should_exit = True
        thread.join(timeout=30)


# -- the process: SIGTERM, workers, its flags ------------------------------------------------------------------------


def big_jpeg() -> bytes:
    """A 7000x7000 photo-sized JPEG (49 megapixels, under the limit): a request that takes a while to decode."""
    buffer = io.BytesIO()
    Image.linear_gradient("L").resize((7000, 7000)).convert("RGB").save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def test_sigterm_drains_the_requests_in_flight() -> None:
    with running_server() as (port, process):
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(call_json, port, "POST", "/predictions/squeezenet?topk=1", big_jpeg())
            deadline = time.monotonic() + 20
            while "squeezenet_requests_in_progress 2.0" not in call(port, "GET", "/metrics")[2].decode():
                assert time.monotonic() < deadline, "the request was never in flight"  # (the scrape is the other)
                time.sleep(0.01)
            process.send_signal(signal.SIGTERM)
            status, answer = pending.result(timeout=30)
        assert status == 200 and len(answer) == 1
        assert process.wait(timeout=30) == -signal.SIGTERM  # uvicorn re-raises the signal once it has drained
        assert "Application shutdown complete" in process.stderr.read()


def test_two_worker_processes(photos: list[Path], cli_top1: dict[str, str]) -> None:
    with running_server("--workers", "2") as (port, _):
        for photo in photos[:4]:
            status, answer = call_json(port, "POST", "/predictions/squeezenet?topk=1", photo.read_bytes())
            assert status == 200 and next(iter(answer)) == cli_top1[photo.name]


@pytest.mark.parametrize(("flags", "words"), [
    (["--weights", "no-such-file.caffemodel"], "no-such-file"),
    (["--port", "70000"], "--port must be between 0 and 65535"),
    (["--max-batch", "0"], "--max-batch must be between 1"),
    (["--name", "a/b"], "--name"),
    (["--max-body-mb", "-1"], "--max-body-mb"),
])
def test_bad_flags_are_one_line(flags: list[str], words: str) -> None:
    command = [sys.executable, "-m", "squeezenet", "serve", "--weights", str(shared_path(WEIGHTS)), *flags]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and words in result.stderr, result.stderr[-1000:]
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_a_busy_port_is_one_line() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "squeezenet", "serve", "--weights", str(shared_path(WEIGHTS)),
                                 "--port", str(port)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


# -- the protocol, piece by piece ------------------------------------------------------------------------------------


def test_torchserve_answer_keeps_two_classes_of_one_name() -> None:
    from squeezenet.evaluate import Prediction

    answer = torchserve_answer([Prediction(134, "crane", 0.6), Prediction(517, "crane", 0.3)])
    assert answer == {"crane": 0.6, "crane (517)": 0.3}


def test_parse_infer_accepts_nested_data_and_refuses_a_bool_shape() -> None:
    meta = tiny_model().meta.replace(preprocessing=sq.get_preprocessing("torchvision").replace(resize=2, crop=2))
    nested = np.arange(12, dtype=np.float32).reshape(1, 3, 2, 2).tolist()
    parsed = parse_infer({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 2, 2], "data": nested}]},
                         meta)
    assert parsed.tensor is not None and parsed.tensor.shape == (1, 3, 2, 2) and float(parsed.tensor.sum()) == 66
    with pytest.raises(ClientError, match="shape"):
        parse_infer({"inputs": [{"name": "input", "datatype": "FP32", "shape": [True, 3, 2, 2], "data": []}]}, meta)


def test_the_batcher_answers_each_request_and_drains_on_stop() -> None:
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    seen: list[int] = []

    def run(images: list[torch.Tensor]) -> np.ndarray:
        seen.append(len(images))
        return torch.stack(images).flatten(1).sum(dim=1, keepdim=True).numpy()

    async def scenario() -> list[np.ndarray]:
        with ThreadPoolExecutor(1) as thread:
            batcher = Batcher(run, thread, max_batch=4, max_wait_ms=50)
            batcher.start()
            answers = await asyncio.gather(*(batcher.submit(torch.full((1, 2), float(i))) for i in range(6)))
            await batcher.stop()
            with pytest.raises(ModelFailure, match="shutting down"):
                await batcher.submit(torch.zeros(1, 2))
            return answers

    answers = asyncio.run(scenario())
    assert [float(answer[0, 0]) for answer in answers] == [2.0 * i for i in range(6)]
    assert seen == [4, 2]


def test_serve_options_are_checked_before_anything_loads() -> None:
    with pytest.raises(SqueezeNetError, match="--max-wait-ms must be between 0 and 10000"):
        ServeOptions(weights="x", max_wait_ms=-1).check()


# -- the page, in a real browser -------------------------------------------------------------------------------------


def chromium() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip("Debian's chromium and chromium-driver are not installed (`make test` installs them)")
    return browser, driver


def test_the_page_classifies_an_uploaded_photo(server: int, photos: list[Path], cli_top1: dict[str, str],
                                               tmp_path: Path) -> None:
    browser, driver = chromium()
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1000,900", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(argument)
    os.environ.setdefault("SE_AVOID_STATS", "true")
    session = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))
    try:
        session.get(f"http://127.0.0.1:{server}/")
        assert "SqueezeNet" in session.title
        session.find_element(By.ID, "file").send_keys(str(photos[1]))
        card = WebDriverWait(session, 60).until(
            lambda s: s.find_element(By.CSS_SELECTOR, ".result[data-top1], .result[data-error]"))
        assert card.get_attribute("data-error") is None, card.get_attribute("data-error")
        assert card.get_attribute("data-top1") == cli_top1[photos[1].name]
        rows = card.find_elements(By.CSS_SELECTOR, ".row")
        assert len(rows) == 5 and "ms" in card.find_element(By.CSS_SELECTOR, ".timing").text
        session.save_screenshot(str(tmp_path / "page.png"))
        assert (tmp_path / "page.png").stat().st_size > 10_000
    finally:
        session.quit()
