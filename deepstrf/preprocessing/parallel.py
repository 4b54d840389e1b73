"""The package's one parallel loop: :func:`parallel_map` over :class:`joblib.Parallel`.

Everything deepstrf runs in parallel (parsing raw files, binning, computing
spectrograms) goes through :func:`parallel_map`, so the choice of where the
work runs is joblib's. By default ``n_jobs > 1`` uses joblib's loky process
pool on this machine; to run on a cluster, wrap the call (or the dataset
constructor that makes it) in :func:`joblib.parallel_config`::

    from dask.distributed import Client
    import joblib

    client = Client("tcp://scheduler:8786")
    with joblib.parallel_config(backend="dask"):
        ds = CRCNSAA2Dataset(path, n_jobs=-1)

No deepstrf code changes for that: joblib hands each task to the backend.
Functions and items must be picklable (module-level functions, not lambdas,
for process-based backends), and the worker processes must be able to
import deepstrf.

Every task runs with its BLAS and OpenMP pools limited to one thread
(threadpoolctl), wherever it runs: in this process (``n_jobs=1``), in a loky
worker or on a dask worker. A float32 matrix product summed by two BLAS
threads rounds differently from one summed by one, so without the limit a
spectrogram computed in the main process (all cores) differed in the last bit
from the same spectrogram computed in a worker (loky gives each worker a
share of the cores), and the cached numbers depended on how the first build
ran. One thread per task also keeps parallel workers from oversubscribing
the cores.

Warnings a task gives (a :class:`~deepstrf.errors.DataQuirkWarning` about a
file, say) are recorded where it runs and given again in this process, in
input order, under this process's warning filters: a warning given in a
worker process would otherwise be lost, so what a build reports would depend
on ``n_jobs``. All of deepstrf's own warnings are recorded; others only where
the filters of the process running the task would show them.
"""

from __future__ import annotations

import reprlib
import traceback
import warnings
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from deepstrf._config import PROGRESS_ENV, progress_disable
from deepstrf._validation import check_n_jobs

__all__ = ["parallel_map", "PROGRESS_ENV", "TASK_THREADS"]

#: BLAS/OpenMP threads each task runs with, in every process (module docstring).
TASK_THREADS = 1

# Seconds a loop must run before its bar appears, so short loops stay quiet.
_PROGRESS_DELAY_S = 1.0

T = TypeVar("T")
R = TypeVar("R")

_item_repr = reprlib.Repr()
_item_repr.maxstring = 120
_item_repr.maxother = 120


class _Failure:
    """What a worker returns instead of raising, so the item can be named."""

    def __init__(self, index: int, error: BaseException, remote_traceback: str) -> None:
        self.index = index
        self.error = error
        self.remote_traceback = remote_traceback


_CONTROLLER: list[Any] = []  # [ThreadpoolController, len(sys.modules) when it was made]


def _controller() -> Any:
    """This process's threadpoolctl controller, made again once more modules are imported.

    Finding the BLAS/OpenMP libraries costs about 0.5 ms (several ms on a loaded machine),
    which ``threadpool_limits`` pays on every call: hundreds of small tasks (one per trial
    file) paid it each. The libraries only change when something new is imported, so the
    controller is kept while ``sys.modules`` does not grow.
    """
    import sys

    from threadpoolctl import ThreadpoolController

    if not _CONTROLLER or _CONTROLLER[1] != len(sys.modules):
        _CONTROLLER[:] = [ThreadpoolController(), len(sys.modules)]
    return _CONTROLLER[0]


class _Done:
    """A task's result with the warnings it gave, as ``(category, message, filename, lineno)``."""

    def __init__(self, value: Any, caught: list[tuple[type[Warning], str, str, int]]) -> None:
        self.value = value
        self.caught = caught

    def rewarn(self) -> Any:
        for category, message, filename, lineno in self.caught:
            # one registry per source file, as warnings.warn keeps per module, so 'default'
            # and 'once' filters show a repeated warning once here too
            warnings.warn_explicit(message, category, filename, lineno,
                                   registry=_REGISTRIES.setdefault(filename, {}))
        return self.value


_REGISTRIES: dict[str, dict[Any, Any]] = {}


class _Call:
    """Picklable wrapper running ``func(item)``, recording its warnings, catching its exception."""

    def __init__(self, func: Callable[[Any], Any]) -> None:
        self.func = func

    def __call__(self, index: int, item: Any) -> Any:
        from deepstrf.errors import DeepSTRFWarning

        with warnings.catch_warnings(record=True) as caught:
            # deepstrf's own warnings (data quirks...) are all recorded, to be given again in
            # the caller under its filters; others follow the filters where the task runs (a
            # worker's import-time DeprecationWarning stays quiet, as it would without this)
            warnings.simplefilter("always", DeepSTRFWarning)
            try:
                # Same thread count everywhere -> same float rounding (module docstring).
                with _controller().limit(limits=TASK_THREADS):
                    value = self.func(item)
            except Exception as err:
                failure = _Failure(index, err, traceback.format_exc())
                failure.caught = [(w.category, str(w.message), w.filename,
                                   w.lineno) for w in caught]
                return failure
        return _Done(value, [(w.category, str(w.message), w.filename, w.lineno)
                             for w in caught])


def parallel_map(func: Callable[[T], R], items: Iterable[T], *, n_jobs: int | None = 1,
                 desc: str | None = None, progress: bool | None = None) -> list[R]:
    """Apply ``func`` to every item, in parallel with joblib, results in input order.

    Parameters
    ----------
    func : callable
        Called as ``func(item)``. Must be picklable for process-based
        backends (a module-level function or a :func:`functools.partial` of
        one).
    items : iterable
        The inputs; consumed into a list first.
    n_jobs : int or None, default 1
        joblib's convention: 1 runs in this process, -1 uses all cores, -2
        all but one, ``n > 1`` that many workers; None defers to an enclosing
        :func:`joblib.parallel_config` (1 if there is none).
    desc : str, optional
        Label of the progress bar and of error messages.
    progress : bool or None, default None
        Show a tqdm progress bar. None: follow the environment variable
        ``DEEPSTRF_PROGRESS`` (``0`` off, ``1`` on) and otherwise show the
        bar only on a terminal, and only once the loop has run for a second
        (short loops stay quiet).

    Returns
    -------
    list
        ``[func(item) for item in items]``.

    Raises
    ------
    ValueError
        If ``n_jobs`` is 0 or not an integer or None, or ``DEEPSTRF_PROGRESS``
        holds an unknown value.
    Exception
        The first exception ``func`` raised (in input order), re-raised with
        its type unchanged and a note naming the item's index and value (and,
        when it ran in another process, the worker's traceback). Later items
        may not have been processed.

    Examples
    --------
    >>> parallel_map(abs, [-1, 2, -3])
    [1, 2, 3]
    """
    import joblib
    from tqdm.auto import tqdm

    if not callable(func):
        raise TypeError(f"func must be callable; got {type(func).__name__}.")
    n_jobs = check_n_jobs(n_jobs)
    if desc is not None and not isinstance(desc, str):
        raise TypeError(f"desc must be a string or None; got {desc!r}.")
    disable = progress_disable(progress)
    items = list(items)
    if not items:
        return []
    call = _Call(func)
    tasks = (joblib.delayed(call)(index, item) for index, item in enumerate(items))
    results: list[Any] = []
    # A bar asked for explicitly shows at once; an automatic one waits.
    delay = 0.0 if disable is False else _PROGRESS_DELAY_S
    with tqdm(total=len(items), desc=desc, disable=disable, delay=delay) as bar:
        runner = joblib.Parallel(n_jobs=n_jobs, return_as="generator")
        outputs = runner(tasks)
        try:
            for result in outputs:
                if isinstance(result, _Failure):
                    _Done(None, getattr(result, "caught", [])).rewarn()
                    _reraise(result, items[result.index], desc)
                results.append(result.rewarn())
                bar.update(1)
        finally:
            # Stops dispatching the remaining tasks when we leave early; the
            # error being raised says more than joblib's note about them.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*still being processed",
                                        category=UserWarning)
                outputs.close()
    return results


def _reraise(failure: _Failure, item: Any, desc: str | None) -> None:
    error = failure.error
    where = f"parallel_map({desc!r})" if desc else "parallel_map"
    note = f"{where}: raised while processing item {failure.index}: {_item_repr.repr(item)}"
    # An exception pickled back from another process has lost its traceback.
    if error.__traceback__ is None:
        note += "\nTraceback in the worker:\n" + failure.remote_traceback.rstrip()
    if hasattr(error, "add_note"):
        error.add_note(note)
        raise error
    # Python 3.10 has no exception notes: keep the type, put the note in front.
    if len(error.args) == 1 and isinstance(error.args[0], str):
        error.args = (f"{note}\n{error.args[0]}",)
    raise error

