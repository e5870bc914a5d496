"""
Import rliable where its dependency ``arch`` 7.x cannot be imported as is: arch 7.2 decorates a method with pandas'
``deprecate_kwarg(old_arg_name, new_arg_name)``, whose signature pandas 3 changed to
``deprecate_kwarg(klass, old_arg_name, new_arg_name)`` (TypeError at import). arch 8 imports fine but rejects
rliable 1.2's ``random_state`` argument, so it is no way out.

The workaround accepts the old call form while arch is being imported, then restores pandas' function. It is only
used if the plain import fails. Remove it once the installed versions import cleanly (pandas < 3, or a fixed arch).
"""

import importlib
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any


def _old_style_deprecate_kwarg(original: Callable[..., Any]) -> Callable[..., Any]:
    def deprecate_kwarg(*args: Any, **kwargs: Any) -> Any:
        if args and isinstance(args[0], str):  # pandas < 3 form: (old_arg_name, new_arg_name, mapping, stacklevel)
            return original(FutureWarning, *args, **kwargs)
        return original(*args, **kwargs)

    return deprecate_kwarg


def import_rliable() -> tuple[ModuleType, ModuleType]:
    """
    :return: ``rliable.library`` and ``rliable.metrics``
    """
    try:
        return importlib.import_module("rliable.library"), importlib.import_module("rliable.metrics")
    except TypeError as error:
        if "deprecate_kwarg" not in str(error):
            raise
    from pandas.util import _decorators

    # Forget the half-imported modules, then import arch again with the old call form accepted.
    for name in [name for name in sys.modules if name.split(".")[0] in ("arch", "rliable")]:
        del sys.modules[name]
    original = _decorators.deprecate_kwarg
    _decorators.deprecate_kwarg = _old_style_deprecate_kwarg(original)  # type: ignore[assignment]
    try:
        importlib.import_module("arch.bootstrap")
    finally:
        _decorators.deprecate_kwarg = original  # type: ignore[assignment]
    return importlib.import_module("rliable.library"), importlib.import_module("rliable.metrics")
