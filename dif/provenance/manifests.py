"""C2PA manifest stores: validated by the C2PA reference implementation (``c2pa-python``), then
summarised field by field, type-checked and bounded, since the report mirrors what an attacker wrote."""

from __future__ import annotations

import functools
import io
import json
from collections import deque
from types import ModuleType
from typing import Any

from dif.provenance.containers import Refused, manifest_store_size
from dif.provenance.findings import (
    MAX_ACTIONS,
    MAX_ASSERTIONS_WALKED,
    MAX_CODES,
    MAX_INGREDIENT_DEPTH,
    MAX_INGREDIENTS,
    MAX_INGREDIENTS_WALKED,
    TRUST_CODES,
    C2paAction,
    C2paFinding,
    C2paIngredient,
    C2paSigner,
    C2paState,
    Trust,
    clean,
    source_type,
)


def c2pa_version() -> str | None:
    """Versions of the C2PA bindings and library, or None where they cannot be loaded.

    The first call loads the native library (~60 ms): a service calls it at start-up.
    """
    module = c2pa_module()
    if module is None:
        return None
    return f"c2pa-python {getattr(module, '__version__', '?')} (c2pa-rs {module.sdk_version()})"


def check_trust_anchors(pem: str) -> None:
    """Raise ValueError if this PEM bundle holds no usable certificate (check it once, at start-up).

    c2pa alone accepts an empty bundle, a key, or a CERTIFICATE block whose contents are not a
    certificate, and then trusts nobody: an operator who configured anchors would never learn
    that none took effect. So every CERTIFICATE block must parse, and there must be one.
    """
    # cryptography comes with c2pa-python (its dependency); imported here, as only start-up needs it.
    from cryptography import x509

    try:
        certificates = x509.load_pem_x509_certificates(pem.encode("ascii", errors="replace"))
    except ValueError as exc:
        first = str(exc).split(". ", 1)[0]
        raise ValueError(f"trust anchors refused: no PEM certificate could be read ({clean(first)})") from exc
    if not certificates:
        raise ValueError("trust anchors refused: no PEM certificate in the bundle")
    module = c2pa_module()
    if module is None:
        raise ValueError("the c2pa bindings cannot be loaded")
    try:
        _context(module, pem).close()
    except Exception as exc:  # the bindings raise their own error types
        raise ValueError(f"trust anchors refused by c2pa: {clean(str(exc))}") from exc


@functools.cache
def c2pa_module() -> ModuleType | None:
    # Imported on first use: the native library is 23 MB and most images carry no manifest.
    try:
        import c2pa
    except Exception:  # ImportError, or OSError when the shared library cannot load
        return None
    return c2pa


def _context(module: ModuleType, trust_anchors: str | None) -> Any:
    # A Context per read: cheap (~0.15 ms, and only for images with a manifest), and it shares
    # no native state between threads or across a fork.
    settings: dict[str, Any] = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
    if trust_anchors:
        settings["trust"] = {"user_anchors": trust_anchors}
    return module.Context.from_dict(settings)


def c2pa_finding(data: bytes, media_type: str | None, max_bytes: int, anchors: str | None) -> C2paFinding:
    try:
        return _read_c2pa(data, media_type, max_bytes, anchors)
    except Exception as exc:  # a finding, never a 500: whatever the bytes do to our walk
        return C2paFinding(state="invalid", error=clean(f"unreadable manifest: {exc}"))


def _read_c2pa(data: bytes, media_type: str | None, max_bytes: int, anchors: str | None) -> C2paFinding:
    try:
        size = manifest_store_size(data)
    except Refused as exc:
        return C2paFinding(state="invalid", error=clean(str(exc)))
    if size is None:
        return C2paFinding()
    if size > max_bytes:
        return C2paFinding(state="invalid", manifest_bytes=size,
                           error=f"manifest store of {size} bytes is over the limit of {max_bytes}: not parsed")
    module = c2pa_module()
    if module is None:
        return C2paFinding(state="invalid", manifest_bytes=size, error="c2pa bindings unavailable: not validated")
    try:
        context = _context(module, anchors)
    except Exception as exc:  # bad trust anchors: the operator's fault, said as such, not the image's
        return C2paFinding(state="invalid", manifest_bytes=size,
                           error=clean(f"not validated: trust anchors refused by c2pa: {exc}"))
    try:
        with module.Reader(media_type, io.BytesIO(data), context=context) as reader:
            text = reader.json()
    except module.C2paError.ManifestNotFound:
        # JUMBF bytes where the container does not keep a manifest: nothing the reader accepts.
        return C2paFinding(manifest_bytes=size, error="C2PA bytes found outside the container's manifest slot")
    except Exception as exc:
        return C2paFinding(state="invalid", manifest_bytes=size, error=clean(str(exc)))
    finally:
        context.close()
    try:
        store = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return C2paFinding(state="invalid", manifest_bytes=size, error=clean(f"manifest report unreadable: {exc}"))
    return summarise_store(store, size)


def summarise_store(store: Any, manifest_bytes: int | None = None) -> C2paFinding:
    """The finding for a manifest store as c2pa's ``Reader.json()`` reports it (any JSON value).

    Every field is type-checked and bounded: the report mirrors attacker-written manifests.
    """
    if not isinstance(store, dict):
        return C2paFinding(state="invalid", manifest_bytes=manifest_bytes, error="manifest report is not an object")
    manifests = store.get("manifests")
    active_label = store.get("active_manifest")
    if not isinstance(manifests, dict) or not isinstance(active_label, str) \
            or not isinstance(manifests.get(active_label), dict):
        return C2paFinding(state="invalid", manifest_bytes=manifest_bytes, error="no active manifest in the store")
    active = manifests[active_label]
    codes = _status_codes(store.get("validation_status"))
    state, trust = _state_and_trust(store.get("validation_state"), codes)
    actions, source_types = _actions_and_source_types(active)
    ingredients, ingredient_count = _ingredients(active, manifests, active_label)
    return C2paFinding(
        state=state,
        trust=trust,
        validation_codes=codes,
        claim_generator=_claim_generator(active),
        signer=_signer(active.get("signature_info")),
        digital_source_types=source_types,
        actions=actions,
        ingredients=ingredients,
        ingredient_count=ingredient_count,
        manifest_bytes=manifest_bytes,
    )


def _status_codes(statuses: Any) -> tuple[str, ...]:
    if not isinstance(statuses, list):
        return ()
    codes = (clean(s.get("code")) for s in statuses[:MAX_CODES * 4] if isinstance(s, dict))
    return tuple(dict.fromkeys(c for c in codes if c))[:MAX_CODES]


def _state_and_trust(raw: Any, codes: tuple[str, ...]) -> tuple[C2paState, Trust]:
    trust: Trust = "trusted" if raw == "Trusted" else \
        "untrusted" if "signingCredential.untrusted" in codes else "unknown"
    # Valid only on the reference implementation's own verdict and with no failure beyond
    # trust: a state this code does not know, or any integrity failure, is not validated.
    failures = [c for c in codes if c not in TRUST_CODES]
    return ("valid" if raw in ("Valid", "Trusted") and not failures else "invalid"), trust


def _claim_generator(manifest: dict[str, Any]) -> str | None:
    info = manifest.get("claim_generator_info")
    if isinstance(info, list) and info and isinstance(info[0], dict):
        name, version = clean(info[0].get("name")), clean(info[0].get("version"))
        if name:
            return f"{name} {version}" if version else name
    return clean(manifest.get("claim_generator"))


def _signer(info: Any) -> C2paSigner | None:
    if not isinstance(info, dict):
        return None
    return C2paSigner(issuer=clean(info.get("issuer")), common_name=clean(info.get("common_name")),
                      time=clean(info.get("time")))


def _assertions(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    assertions = manifest.get("assertions")
    if not isinstance(assertions, list):
        return []
    return [a for a in assertions[:MAX_ASSERTIONS_WALKED] if isinstance(a, dict)]


def _actions_and_source_types(manifest: dict[str, Any]) -> tuple[tuple[C2paAction, ...], tuple[str, ...]]:
    actions: list[C2paAction] = []
    source_types: list[str] = []
    for assertion in _assertions(manifest):
        label, data = assertion.get("label"), assertion.get("data")
        if not isinstance(label, str) or not isinstance(data, dict):
            continue
        if label.startswith("c2pa.actions"):
            listed = data.get("actions")
            for raw in listed[:MAX_ACTIONS] if isinstance(listed, list) else []:
                action = _action(raw)
                if action is not None and len(actions) < MAX_ACTIONS:
                    actions.append(action)
                    if action.digital_source_type:
                        source_types.append(action.digital_source_type)
        elif label.startswith("stds.iptc"):
            declared = source_type(data.get("Iptc4xmpExt:DigitalSourceType"))
            if declared:
                source_types.append(declared)
    return tuple(actions), tuple(dict.fromkeys(source_types))


def _action(raw: Any) -> C2paAction | None:
    if not isinstance(raw, dict):
        return None
    name = clean(raw.get("action"))
    if not name:
        return None
    agent = raw.get("softwareAgent")
    agent_name = clean(agent.get("name")) if isinstance(agent, dict) else clean(agent)
    return C2paAction(action=name, digital_source_type=source_type(raw.get("digitalSourceType")),
                      software_agent=agent_name)


def _ingredients(active: dict[str, Any], manifests: dict[str, Any],
                 active_label: str) -> tuple[tuple[C2paIngredient, ...], int]:
    """Breadth-first over ingredients, depth- and count-bounded; a manifest is entered once."""
    direct = active.get("ingredients")
    direct = direct if isinstance(direct, list) else []
    found: list[C2paIngredient] = []
    visited = {active_label}
    queue: deque[tuple[Any, int]] = deque((i, 1) for i in direct[:MAX_INGREDIENTS_WALKED])
    walked = 0
    while queue and walked < MAX_INGREDIENTS_WALKED and len(found) < MAX_INGREDIENTS:
        raw, depth = queue.popleft()
        walked += 1
        if not isinstance(raw, dict):
            continue
        label = raw.get("active_manifest")
        own = manifests.get(label) if isinstance(label, str) else None
        source_types: tuple[str, ...] = ()
        if isinstance(label, str) and isinstance(own, dict) and label not in visited:
            visited.add(label)
            source_types = _actions_and_source_types(own)[1]
            nested = own.get("ingredients")
            if depth < MAX_INGREDIENT_DEPTH and isinstance(nested, list):
                queue.extend((i, depth + 1) for i in nested[:MAX_INGREDIENTS_WALKED])
        found.append(C2paIngredient(title=clean(raw.get("title")), format=clean(raw.get("format")),
                                    relationship=clean(raw.get("relationship")), depth=depth,
                                    has_manifest=isinstance(own, dict), digital_source_types=source_types))
    return tuple(found), len(direct)
