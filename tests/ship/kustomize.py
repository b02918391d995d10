"""A small kustomize: enough to render deploy/k8s without kubectl.

Supports what the manifests use (resources, strategic-merge `patches` matched by kind
and name, `images`) and refuses any other kustomization field, so it never silently
renders something else than kustomize would. When kubectl is installed, tests/ship
checks both renderings agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "patches", "images"}


def render(folder: Path) -> list[dict[str, Any]]:
    spec = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(spec) - SUPPORTED
    assert not unknown, f"{folder}: tests/ship/kustomize.py does not handle {sorted(unknown)}"
    objects: list[dict[str, Any]] = []
    for resource in spec.get("resources", []):
        path = folder / resource
        if path.is_dir():
            objects += render(path)
        else:
            objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for patch in spec.get("patches", []):
        assert set(patch) == {"path"}, f"{folder}: only file patches without a target are handled"
        doc = yaml.safe_load((folder / patch["path"]).read_text())
        merge(find(objects, doc["kind"], doc["metadata"]["name"]), doc)
    for image in spec.get("images", []):
        for container in containers(objects):
            name, _, tag = container["image"].partition(":")
            if name == image["name"]:
                container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"
    return objects


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"patch target {kind}/{name}: {len(matches)} matches"
    return matches[0]


def merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """Strategic merge as the manifests need it: maps merge, lists of named items merge by
    name (containers, env), other lists are replaced."""
    for key, value in patch.items():
        old = target.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            merge(old, value)
        elif isinstance(old, list) and isinstance(value, list) and _named(old) and _named(value):
            by_name = {item["name"]: item for item in old}
            for item in value:
                if item["name"] in by_name:
                    merge(by_name[item["name"]], item)
                else:
                    old.append(item)
        else:
            target[key] = value


def _named(items: list[Any]) -> bool:
    return all(isinstance(i, dict) and "name" in i for i in items)


def containers(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for obj in objects:
        pod = obj.get("spec", {}).get("template", {}).get("spec", {})
        found += pod.get("containers", []) + pod.get("initContainers", [])
    return found
