"""``synk8s serve``: an exported classifier behind KServe's model server (Open Inference Protocol v2).

    synk8s serve exports/cifar100 --port 8080                 # http://127.0.0.1:8080/v2/models/classifier/infer
    synk8s serve /mnt/models --host 0.0.0.0 --name synk8s-classifier   # in a pod (manifests/serving/)

Needs the ``serve`` extra (``pip install 'synk8s[serve]'``). The request format: docs/serving.md.
"""

from __future__ import annotations

import typer

from synk8s.errors import UsageError


def serve_cmd(
    model: str = typer.Argument(..., help="The classifier folder `synk8s export` wrote (path or s3://)."),
    port: int = typer.Option(8080, "--port", min=1, max=65535, help="HTTP port."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; 0.0.0.0 for every interface."),
    name: str = typer.Option("classifier", "--name", help="The model name in /v2/models/<name>/infer."),
) -> None:
    """Serve a classifier folder over HTTP with kserve.ModelServer (v2 protocol) until stopped."""
    try:
        from synk8s.serving import serve
    except ImportError as error:
        missing = error.name
        raise UsageError(f"serving needs the serve extra ({missing} is missing): pip install 'synk8s[serve]'") from None
    serve(model, host=host, port=port, name=name)
