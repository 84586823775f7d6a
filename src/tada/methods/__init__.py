"""Every steering method behind one interface: ``tada methods``, ``tada fit``, ``tada steer``.

``get_method(name)`` returns a :class:`~tada.methods.base.Method`; ``load_artifact(path)``
reads the artifact of any method; ``steering(model, [(artifact, alpha), ...])`` applies
several at once after refusing stacks that cannot compose.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from ..errors import ArtifactError, TadaError
from .base import ApplyOptions, FitRequest, Method, MethodArtifact

# name -> "module:Class", in the order `tada methods` lists them (the paper's table order)
_REGISTRY: dict[str, str] = {
    "prompt-switch": "tada.methods.prompting:PromptSwitch",
    "text-embedding": "tada.methods.prompting:TextEmbedding",
    "token-embedding": "tada.methods.token_embedding:TokenEmbedding",
    "freesliders": "tada.methods.freesliders:FreeSliders",
    "concept-slider": "tada.methods.concept_slider:ConceptSlider",
    "austeer": "tada.methods.austeer:AUSteer",
    "caa": "tada.methods.caa:CAA",
    "sae": "tada.methods.sae:SAESteering",
}
_LOADED: dict[str, Method] = {}

__all__ = [
    "ApplyOptions",
    "FitRequest",
    "Method",
    "MethodArtifact",
    "get_method",
    "load_artifact",
    "method_names",
    "steering",
]


def method_names() -> list[str]:
    return list(_REGISTRY)


def get_method(name: str) -> Method:
    if name not in _REGISTRY:
        raise TadaError(f"unknown method {name!r}; choose one of {', '.join(_REGISTRY)} (see `tada methods`)")
    if name not in _LOADED:
        module, _, cls = _REGISTRY[name].partition(":")
        _LOADED[name] = getattr(importlib.import_module(module), cls)()
    return _LOADED[name]


def load_artifact(path: str | Path) -> Any:
    """Any tada steering artifact (a CAA-style vector or another method's file); never executes code."""
    from safetensors import SafetensorError, safe_open

    from ..artifacts import FORMAT as VECTOR_FORMAT
    from ..artifacts import SteeringVector
    from .base import FORMAT

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"no steering artifact at {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{path} is not a readable safetensors file ({exc})") from None
    fmt = meta.get("format")
    if fmt == VECTOR_FORMAT:
        artifact = SteeringVector.load(path)
    elif fmt == FORMAT:
        artifact = MethodArtifact.load(path)
    else:
        raise ArtifactError(f"{path} is not a tada steering artifact (format {fmt!r})")
    if artifact.method not in _REGISTRY:
        raise ArtifactError(f"{path} was made by method {artifact.method!r}, which this tada does not know")
    return artifact


def _label(artifact: Any) -> str:
    return f"{artifact.method} ({artifact.concept or 'custom'})"


def check_stack(model: Any, items: Sequence[tuple[Any, float]]) -> None:
    """Refuse, in one line, artifacts that would rewrite the same thing in incompatible ways."""
    owners: dict[str, tuple[str, Any]] = {}
    for artifact, _alpha in items:
        artifact.check_model(model)
        for resource, how in get_method(artifact.method).claims(artifact, model).items():
            if resource in owners:
                other_how, other = owners[resource]
                if "replace" in (how, other_how):
                    raise TadaError(
                        f"cannot stack {_label(other)} with {_label(artifact)}: both rewrite {resource}; "
                        "apply one of them at a time"
                    )
            owners[resource] = (how, artifact)


@contextmanager
def steering(model: Any, items: Sequence[tuple[Any, float]], **options: Any) -> Iterator[None]:
    """Apply several artifacts at their strengths for the ``with`` block (refusing bad stacks first)."""
    check_stack(model, items)
    with ExitStack() as stack:
        for artifact, alpha in items:
            stack.enter_context(get_method(artifact.method).apply(artifact, model, alpha, ApplyOptions(**options)))
        yield
