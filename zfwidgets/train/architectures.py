"""Which model classes a run's manifest may name, and how a model's architecture is described.

Models are rebuilt from a manifest only through the fixed allow-list below: a name read from a
file is looked up in it, never imported, so a manifest cannot make us run arbitrary code.
Anything else is rebuilt by a model factory the user passes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

import zfwidgets.zoo as zoo

__all__ = ["ALLOWED_CLASSES", "allowed_class", "architecture_spec", "describe", "shapes_of"]

# zfwidgets.zoo classes whose constructors take plain JSON values (ints, lists of ints).
# SmallKrizhevskyNet joins the zoo later; names missing from the installed zoo are skipped.
ALLOWED_CLASSES = ("SmallZFNet", "SmallKrizhevskyNet", "SmallResNet", "ZFNet", "KrizhevskyNet")


def allowed_class(name: str) -> Callable[..., nn.Module] | None:
    """The zoo class called ``name`` if it is on the allow-list and installed, else ``None``."""
    if name not in ALLOWED_CLASSES:
        return None
    return getattr(zoo, name, None)


def shapes_of(state: dict[str, torch.Tensor]) -> dict[str, list[int]]:
    """``{parameter or buffer name: shape}`` of a state dict."""
    return {k: list(v.shape) for k, v in state.items()}


def describe(spec: dict[str, Any]) -> str:
    """A one-line description such as ``SmallZFNet(widths=[8, 16, 16])``."""
    kwargs = spec.get("kwargs")
    if kwargs is None:
        args = "unknown arguments"
    else:
        args = ", ".join(f"{k}={v!r}" for k, v in sorted(kwargs.items()))
    return f"{spec.get('class', '?')}({args})"


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    raise TypeError(f"constructor argument {value!r} is not a plain JSON value")


def _shapes_of_new(cls, kwargs: dict[str, Any]) -> dict[str, list[int]]:
    """Parameter shapes of ``cls(**kwargs)``, built on the meta device.

    The global random generator is left untouched: building a model draws initial weights,
    which would shift the dropout stream of the training run being recorded.
    """
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        return shapes_of(cls(**kwargs).state_dict())


def architecture_spec(model: nn.Module, kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Class name, constructor arguments and parameter shapes of ``model``.

    ``kwargs`` are the arguments the model was built with. Without them, an allow-listed class
    whose default construction has the same shapes is recorded with ``{}``; otherwise the
    arguments are recorded as unknown (``None``) and loading the run needs a model factory.
    """
    cls = type(model)
    shapes = shapes_of(model.state_dict())
    if kwargs is not None:
        kwargs = {str(k): _jsonable(v) for k, v in kwargs.items()}
        rebuilt = allowed_class(cls.__name__)
        if rebuilt is cls:
            got = _shapes_of_new(rebuilt, kwargs)
            if got != shapes:
                raise ValueError(
                    f"{describe({'class': cls.__name__, 'kwargs': kwargs})} does not build the "
                    "model being recorded (its parameter shapes differ); pass the arguments the "
                    "model was really built with"
                )
    elif allowed_class(cls.__name__) is cls and _shapes_of_new(cls, {}) == shapes:
        kwargs = {}
    return {
        "class": cls.__name__,
        "module": cls.__module__,
        "kwargs": kwargs,
        "parameters": shapes,
    }
