"""Offline rendering of the kustomizations under manifests/, shared by the manifest tests.

A small renderer follows a kustomization's ``resources`` and applies its JSON6902 ``patches`` (the
only kustomize features the manifests use; anything else fails), so no kubectl is needed.
test_manifests.py compares it with ``kubectl kustomize`` where kubectl is installed.
"""

from pathlib import Path

import yaml

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
KUSTOMIZATIONS = ["base", "overlays/dev", "overlays/prod"]
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod"}
_SUPPORTED_KEYS = {"apiVersion", "kind", "resources", "patches"}


def _matches(doc, target):
    unknown = set(target) - {"kind", "name", "labelSelector"}
    assert not unknown, f"patch target keys the test renderer does not support: {unknown}"
    labels = doc["metadata"].get("labels", {})
    selector = dict(pair.split("=", 1) for pair in target.get("labelSelector", "").split(",") if pair)
    return (
        target.get("kind", doc["kind"]) == doc["kind"]
        and target.get("name", doc["metadata"]["name"]) == doc["metadata"]["name"]
        and all(labels.get(k) == v for k, v in selector.items())
    )


def _replace(doc, pointer, value):
    *parents, last = [part.replace("~1", "/").replace("~0", "~") for part in pointer.lstrip("/").split("/")]
    node = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key = int(last) if isinstance(node, list) else last
    assert (key < len(node)) if isinstance(node, list) else (key in node), f"replace of missing {pointer}"
    node[key] = value


def render(directory):
    """Render one kustomization directory into a list of documents (dicts)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert set(kustomization) <= _SUPPORTED_KEYS, (
        f"{directory}: unsupported keys {set(kustomization) - _SUPPORTED_KEYS}"
    )
    docs = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        docs += render(path) if path.is_dir() else [d for d in yaml.safe_load_all(path.read_text()) if d]
    for patch in kustomization.get("patches", []):
        ops = yaml.safe_load((directory / patch["path"]).read_text())
        targets = [doc for doc in docs if _matches(doc, patch["target"])]
        assert targets, f"{directory}: patch {patch['path']} matches nothing"
        for op in ops:
            assert op["op"] == "replace", f"{patch['path']}: only 'replace' is supported, got {op['op']}"
            for doc in targets:
                _replace(doc, op["path"], op["value"])
    return docs


def render_all():
    """Every kustomization in KUSTOMIZATIONS, rendered: ``{name: [documents]}``."""
    return {name: render(MANIFESTS / name) for name in KUSTOMIZATIONS}


def one(docs, kind, name):
    """The single document of that kind and name (fails when there are none or several)."""
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_labels(workload):
    """The labels of a workload's pod template."""
    return workload["spec"]["template"]["metadata"]["labels"]


def pod_specs(docs):
    """``(document, pod spec)`` for every workload among the documents."""
    for doc in docs:
        if doc["kind"] in WORKLOAD_KINDS:
            spec = doc["spec"]
            if doc["kind"] == "CronJob":
                spec = spec["jobTemplate"]["spec"]
            yield doc, spec["template"]["spec"] if "template" in spec else spec


def containers(pod):
    """Init and regular containers of a pod spec."""
    return pod.get("initContainers", []) + pod["containers"]
