"""nerwin: a window-classifier NER trainer whose every gradient is derived by hand.

The public Python API (see README "Python API"): :func:`load` a model and tag text with it,
:func:`train`, :func:`evaluate`; errors in what is given raise :class:`NerwinError`.
Everything is imported on first use (module ``__getattr__``), so ``import nerwin`` stays
light and does not load numpy before the BLAS default below is applied.
"""

from typing import Any

from nerwin.errors import NerwinError
from nerwin.threads import apply_default_if_numpy_not_loaded

# The one BLAS default (one thread), for the command line and library use alike; it must
# come before numpy is loaded (see nerwin/threads.py).
apply_default_if_numpy_not_loaded()

__version__ = "0.1.0"

__all__ = ["Doc", "Entity", "NerwinError", "RunInfo", "Tagger", "__version__", "evaluate",
           "load", "train"]

# name -> module that defines it; imported when first asked for.
_LAZY = {"Doc": "nerwin.api", "Entity": "nerwin.tagging", "RunInfo": "nerwin.train",
         "Tagger": "nerwin.api", "evaluate": "nerwin.api", "load": "nerwin.api",
         "train": "nerwin.train"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nerwin' has no attribute {name!r}")
    import importlib

    mod = importlib.import_module(module)
    # nerwin.train is the submodule nerwin/train.py, made callable as nerwin.api.train
    # (a package attribute that is also a submodule's name is always the submodule).
    value = mod if module == f"nerwin.{name}" else getattr(mod, name)
    globals()[name] = value  # the next access skips this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
