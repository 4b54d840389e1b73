"""Environment switches read at call time, in one place.

``DEEPSTRF_OFFLINE``  1/true/yes/on: never touch the network.
``DEEPSTRF_PROGRESS`` 0 hides progress bars, 1 shows them; unset shows them
                      only on a terminal.
``DEEPSTRF_DATA_DIR`` where datasets live (see :mod:`deepstrf.io.paths`).
"""

from __future__ import annotations

import os

OFFLINE_ENV = "DEEPSTRF_OFFLINE"
#: Environment variable for progress bars: 0 hides them, 1 shows them; unset, only on a terminal.
PROGRESS_ENV = "DEEPSTRF_PROGRESS"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def env_flag(name: str) -> bool | None:
    """The boolean value of environment variable ``name``, or None when unset or empty."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"environment variable {name} must be one of 1/0, true/false, yes/no, "
                     f"on/off; got {raw!r}. Fix or unset it.")


def offline_mode() -> bool:
    """True when ``$DEEPSTRF_OFFLINE`` asks for no network access."""
    return bool(env_flag(OFFLINE_ENV))


def progress_disable(progress: bool | None = None) -> bool | None:
    """tqdm's ``disable`` for a progress bar: True off, False on, None on a terminal only.

    An explicit ``progress`` wins; None defers to ``$DEEPSTRF_PROGRESS``.
    """
    if progress is not None:
        if not isinstance(progress, bool):
            raise TypeError(f"progress must be True, False or None; got {progress!r} "
                            f"({type(progress).__name__}).")
        return not progress
    flag = env_flag(PROGRESS_ENV)
    return None if flag is None else not flag
