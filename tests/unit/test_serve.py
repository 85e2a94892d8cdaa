"""``synk8s serve``: a real KServe model server on 127.0.0.1 answers Open Inference Protocol (v2) requests."""

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import torch
from typer.testing import CliRunner

import synk8s
from synk8s.cli.main import app

pytestmark = pytest.mark.timeout(120)

NAME = "synk8s-classifier"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _request(url: str, body: dict | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def server(exported_classifier, tmp_path_factory):
    """``synk8s serve`` in a subprocess on a free 127.0.0.1 port, ready; yields its base URL."""
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "server.log"
    command = [sys.executable, "-m", "synk8s", "serve", str(exported_classifier), "--port", str(port),
               "--host", "127.0.0.1", "--name", NAME]  # fmt: skip
    with open(log, "wb") as out:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                if _request(f"{url}/v2/health/ready")[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        yield url
    finally:
        process.kill()  # a graceful stop waits for uvicorn's grace period; nothing here needs it
        process.wait(timeout=30)


def _bytes_request(paths) -> dict:
    data = [base64.b64encode(path.read_bytes()).decode() for path in paths]
    return {"id": "r1", "inputs": [{"name": "images", "shape": [len(data)], "datatype": "BYTES", "data": data}]}


def test_a_v2_request_gets_the_top1_that_predict_prints(server, exported_classifier, image_folder):
    paths = sorted(image_folder.rglob("*.*"))
    status, body = _request(f"{server}/v2/models/{NAME}/infer", _bytes_request(paths))
    assert status == 200, body
    outputs = {o["name"]: o for o in body["outputs"]}
    assert body["id"] == "r1" and outputs["logits"]["shape"] == [len(paths), 10]

    command = ["predict", str(exported_classifier), *map(str, paths), "-k", "1", "-o", "json"]
    predicted = CliRunner().invoke(app, command)
    assert predicted.exit_code == 0, predicted.output
    top1 = [p["top"][0]["class"] for p in json.loads(predicted.stdout)["predictions"]]
    assert outputs["labels"]["data"] == top1
    logits = torch.tensor(outputs["logits"]["data"]).view(len(paths), 10)
    clf = synk8s.load_classifier(str(exported_classifier))
    from synk8s.predict import read_image

    torch.testing.assert_close(logits, clf([read_image(str(p)) for p in paths]), atol=1e-5, rtol=1e-5)

    # The same images preprocessed (the FP32 form, model.onnx's input) give the same labels.
    pixels = clf.pixels([read_image(str(p)) for p in paths])  # (N, 3, 32, 32)
    fp32 = {"inputs": [{"name": "images", "shape": list(pixels.shape), "datatype": "FP32",
                        "data": pixels.flatten().tolist()}]}  # fmt: skip
    status, body = _request(f"{server}/v2/models/{NAME}/infer", fp32)
    assert status == 200 and {o["name"]: o for o in body["outputs"]}["labels"]["data"] == top1


def test_the_server_describes_its_tensors_and_refuses_bad_images(server):
    status, meta = _request(f"{server}/v2/models/{NAME}")
    assert status == 200 and [(i["datatype"], i["shape"]) for i in meta["inputs"]] == [
        ("BYTES", [-1]), ("FP32", [-1, 3, 32, 32])
    ]
    bad = {"inputs": [{"name": "images", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(b"x").decode()]}]}
    status, body = _request(f"{server}/v2/models/{NAME}/infer", bad)
    assert (status, body["error"]) == (400, "images[0]: not an image file Pillow can read")
    wrong = {"inputs": [{"name": "pixels", "shape": [1], "datatype": "FP32", "data": [0.0]}]}
    status, body = _request(f"{server}/v2/models/{NAME}/infer", wrong)
    assert status == 400 and "needs an input named 'images'" in body["error"]


def test_serving_a_folder_without_a_classifier_fails_before_listening(tmp_path):
    result = CliRunner().invoke(app, ["serve", str(tmp_path), "--port", str(_free_port())])
    assert result.exit_code == 1
    assert result.output.strip().startswith(f"error: no exported model at {tmp_path}")
