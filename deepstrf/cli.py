"""The ``deepstrf`` command: the dataset catalogue, downloads, the processed cache, the demo.

Exit codes: 0 success, 1 the operation failed (the message says why), 2 the
command line was wrong (``cache diff``, like diff(1): 0 equal, 1 different).
Errors print one message, without a traceback (``--debug`` shows it).
"""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deepstrf.io.download import human_size

__all__ = ["main"]


class CLIError(Exception):
    """A failure to report with exit code 1."""


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _dataset(name: str) -> Any:
    from deepstrf.datasets.registry import get_dataset

    try:
        return get_dataset(name)
    except KeyError as err:
        raise CLIError(err.args[0]) from None


def _selected(name: str | None) -> list[Any]:
    from deepstrf.datasets.registry import DATASETS

    return [_dataset(name)] if name else [_dataset(n) for n in DATASETS]


# ---------------------------------------------------------------------------- commands
def cmd_list(args: argparse.Namespace) -> int:
    from deepstrf.datasets.registry import list_datasets

    rows = [("name", "species", "area", "signal", "N", "S", "download", "access")]
    for info in list_datasets():
        rows.append((info.name, info.species, info.area, info.signal,
                     "?" if info.n_neurons is None else str(info.n_neurons),
                     "?" if info.n_stims is None else str(info.n_stims),
                     info.download_size, info.access))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for k, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if k == 0:
            print("  ".join("-" * w for w in widths))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from deepstrf.io.cache import list_entries

    cls = _dataset(args.name)
    if args.bibtex:
        print(cls.cite(), end="")
        return 0
    info = cls.info
    paths = cls.default_paths(args.path)
    print(f"{info.title}  ({cls.__name__}, name '{info.name}')")
    print(f"  species   {info.species}")
    print(f"  area      {info.area}")
    print(f"  signal    {info.signal}")
    print(f"  size      N={info.n_neurons if info.n_neurons is not None else '?'} neurons, "
          f"S={info.n_stims if info.n_stims is not None else '?'} stimuli, R {info.repeats}")
    print(f"  access    {info.access}; download {info.download_size}")
    print(f"  web       {info.url}")
    print(textwrap.fill(f"{info.citation} doi:{info.doi}", 90, initial_indent="  cite      ",
                        subsequent_indent=" " * 12))
    for paper in info.papers:
        print(f"            {paper}")
    print("  files")
    for f in cls.remote_files:
        check = (f"{f.checksum[0]} known" if f.checksum else
                 "checksum from the host's API" if f.host else "no published checksum")
        size = human_size(f.size) if f.size is not None else "size from the host"
        needed = ("; only when " + ", ".join(f"{k}={v!r}" for k, v in f.when)) if f.when else ""
        print(f"    {f.name}  ({size}; {check}; {f.describe_source()}{needed})")
    missing = paths.missing(cls.raw_markers)
    present = [m for m in cls.raw_markers if m not in missing]
    state = ("present" if not missing else
             f"partly present: {', '.join(present)}" if present else "absent")
    if paths.in_place:
        state += "; read in place, never written to"
    print(f"  raw       {paths.raw}  ({state})")
    entries = list_entries(paths.processed)
    print(f"  processed {paths.processed}  ({len(entries)} cache entr"
          f"{'y' if len(entries) == 1 else 'ies'})")
    for entry, manifest in entries:
        _print_entry(entry, manifest, indent="    ")
    return 0


def _param_value(text: str) -> Any:
    """``true``/``false``/numbers/JSON lists as such, ``a,b`` as a list, else the string."""
    import json

    try:
        value = json.loads(text)
    except ValueError:
        return [v.strip() for v in text.split(",") if v.strip()] if "," in text else text
    return value if isinstance(value, (bool, int, float, list)) else text


def _parse_params(items: Sequence[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key.isidentifier():
            raise CLIError(f"--param takes NAME=VALUE (e.g. animals=GreBlu9508M,YelBlu6903F "
                           f"or return_waveform=true); got {item!r}.")
        params[key] = _param_value(value.strip())
    return params


def _terminal_prompt(username: str | None) -> tuple[str, str]:
    """Ask for the CRCNS credentials on the terminal; a clear error when there is none."""
    import getpass

    from deepstrf.errors import AuthenticationError
    from deepstrf.io.download import CRCNS_REGISTER_URL

    if not sys.stdin.isatty():
        raise AuthenticationError(
            "no CRCNS password is configured and the input is not a terminal, so "
            "`deepstrf download` cannot ask for one. Set the environment variables "
            "CRCNS_USERNAME and CRCNS_PASSWORD, or add 'machine crcns.org login <user> password "
            f"<password>' to ~/.netrc (a free account: {CRCNS_REGISTER_URL}).")
    if not username:
        username = input("CRCNS username: ").strip()
    password = getpass.getpass(f"CRCNS password for {username}: ")
    if not username or not password:
        raise AuthenticationError("an empty CRCNS username or password was entered; nothing "
                                  "was downloaded.")
    return username, password


def cmd_download(args: argparse.Namespace) -> int:
    cls = _dataset(args.name)
    params = _parse_params(args.param or [])
    raw = cls.download_raw(args.path, username=args.username,
                           progress=False if args.quiet else None, everything=args.all,
                           prompt=_terminal_prompt, **params)
    print(f"{cls.__name__}: raw files ready in {raw}")
    return 0


def _print_entry(entry: Path, manifest: dict | None, indent: str = "  ") -> None:
    size = human_size(_dir_size(entry))
    if manifest is None:
        print(f"{indent}{entry.name}  {size}  DAMAGED or incomplete: rebuilt on use (remove "
              "with `deepstrf cache clear`)")
        return
    counts = manifest.get("counts", {})
    if manifest.get("kind") == "shard":  # one unit of a sharded build (deepstrf.io.shards)
        print(f"{indent}{entry.name}  {size}  created {manifest.get('created', '?')}  "
              f"N={counts.get('neurons', '?')} S={counts.get('stims', '?')}  "
              f"shard: {manifest.get('shard', '?')}")
        return
    params = manifest.get("parameters", {})
    shown = ", ".join(f"{k}={v}" for k, v in params.items() if k != "front_end")
    front = params.get("front_end", {})
    if isinstance(front, dict) and front:
        shown += f", dt_ms={front.get('dt_ms')}"
        shown += ", waveform" if front.get("return_waveform") else \
            f", {(front.get('spectrogram') or {}).get('n_bands')} bands"
    shards = manifest.get("shards")
    if isinstance(shards, list):
        # a "composed" entry is only the record: its values are read from the shards
        how = " at load time" if manifest.get("kind") == "composed" else ""
        shown += f"; composed{how} of {len(shards)} shards"
    print(f"{indent}{entry.name}  {size}  created {manifest.get('created', '?')}  "
          f"N={counts.get('neurons', '?')} S={counts.get('stims', '?')}  {shown}")


def _entries(args: argparse.Namespace) -> list[tuple[Any, Path, dict | None]]:
    from deepstrf.io.cache import list_entries

    out = []
    for cls in _selected(args.name):
        for entry, manifest in list_entries(cls.default_paths(args.path).processed):
            if args.key is None or entry.name.startswith(args.key):
                out.append((cls, entry, manifest))
    return out


def _entry_folder(spec: str) -> Path:
    """An entry named on the command line: its folder, its manifest.json, or its key (prefix)."""
    path = Path(spec).expanduser()
    if path.name == "manifest.json" and path.is_file():
        return path.parent
    if path.is_dir():
        if not (path / "manifest.json").exists():
            raise CLIError(f"{path} is not a cache entry (it holds no manifest.json); give an "
                           "entry folder (processed/<key>) or a key from `deepstrf cache ls`.")
        return path
    from deepstrf.datasets.registry import DATASETS
    from deepstrf.io.cache import list_entries

    found = [entry for name in DATASETS
             for entry, _ in list_entries(_dataset(name).default_paths(None).processed)
             if entry.name.startswith(spec)]
    if len(found) != 1:
        where = "under the data home" if not found else \
            f"({len(found)} entries match: {', '.join(str(f) for f in found)})"
        raise CLIError(f"{spec!r} names no single cache entry {where}; give an entry folder "
                       "(processed/<key>) or a longer key from `deepstrf cache ls`.")
    return found[0]


def _cache_diff(args: argparse.Namespace) -> int:
    from deepstrf.io.cache import compare_entries

    if args.name is None or args.other is None:
        raise CLIError("cache diff needs two entries: `deepstrf cache diff A B`, each an entry "
                       "folder (processed/<key>), its manifest.json or a key.")
    a, b = _entry_folder(args.name), _entry_folder(args.other)
    print(f"A {a}")
    print(f"B {b}")
    comparison = compare_entries(a, b)
    for line in comparison.lines():
        print(line)
    return 0 if comparison.equal else 1


def cmd_cache(args: argparse.Namespace) -> int:
    from deepstrf.io.cache import verify_entry

    if args.action == "diff":
        return _cache_diff(args)
    if args.other is not None:
        raise CLIError(f"cache {args.action} takes one dataset NAME; got a second argument "
                       f"{args.other!r}.")
    if args.path is not None and args.name is None:
        raise CLIError("--path needs a dataset NAME (it is that dataset's folder).")
    entries = _entries(args)
    leftovers = _leftovers(args)
    if args.action == "ls":
        if not entries and not leftovers:
            print("no processed cache entries")
        for cls in _selected(args.name):
            mine = [(e, m) for c, e, m in entries if c is cls]
            debris = [p for c, p in leftovers if c is cls]
            if not mine and not debris:
                continue
            print(f"{cls.__name__}  ({cls.default_paths(args.path).processed})")
            for entry, manifest in mine:
                _print_entry(entry, manifest)
            if debris:
                size = human_size(sum(_dir_size(p) for p in debris))
                print(f"  {len(debris)} leftover folder{'' if len(debris) == 1 else 's'} of "
                      f"interrupted builds (.tmp-*/.old-*, {size}): removed by "
                      "`deepstrf cache clear`")
        return 0
    if args.action == "size":
        total = 0
        for cls in _selected(args.name):
            processed = cls.default_paths(args.path).processed
            size = _dir_size(processed) if processed.is_dir() else 0
            total += size
            print(f"{cls.__name__:<20} {human_size(size):>10}  {processed}")
        print(f"{'total':<20} {human_size(total):>10}")
        return 0
    if args.action == "verify":
        bad = 0
        for cls, entry, _ in entries:
            problems = verify_entry(entry)
            status = "OK" if not problems else "DAMAGED: " + "; ".join(problems)
            print(f"{cls.__name__} {entry.name}: {status}")
            bad += bool(problems)
        if bad:
            raise CLIError(f"{bad} damaged cache entr{'y' if bad == 1 else 'ies'}; remove with "
                           "`deepstrf cache clear NAME --key KEY` (the next load rebuilds).")
        return 0
    # clear
    if not entries and not leftovers:
        print("nothing to clear")
        return 0
    what = " and ".join(x for x in (
        entries and f"{len(entries)} cache entr{'y' if len(entries) == 1 else 'ies'}",
        leftovers and f"{len(leftovers)} leftover folder{'' if len(leftovers) == 1 else 's'} "
                      "of interrupted builds") if x)
    if not args.yes:
        if not sys.stdin.isatty():
            raise CLIError(f"this would delete {what}; add --yes to confirm.")
        answer = input(f"Delete {what}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 0
    from deepstrf.io.cache import remove_entry

    for cls, entry, _ in entries:
        if remove_entry(entry):
            print(f"removed {cls.__name__} {entry.name}")
        else:
            print(f"kept {cls.__name__} {entry.name}: a build of it is running (it holds "
                  f"{entry.parent / f'.{entry.name}.lock'}); clear again once it has finished")
    _clear_leftovers(args)
    return 0


def _leftovers(args: argparse.Namespace) -> list[tuple[Any, Path]]:
    from deepstrf.io.cache import list_leftovers

    return [(cls, path) for cls in _selected(args.name)
            for path, key in list_leftovers(cls.default_paths(args.path).processed)
            if args.key is None or key.startswith(args.key)]


def _clear_leftovers(args: argparse.Namespace) -> None:
    """Remove the folders of interrupted builds, keeping those of a build under way."""
    from deepstrf.io.cache import list_leftovers, remove_leftovers

    for cls in _selected(args.name):
        processed = cls.default_paths(args.path).processed
        keys = dict(list_leftovers(processed))
        removed, kept = remove_leftovers(processed, args.key or "")
        for path in removed:
            print(f"removed {cls.__name__} leftover {path.name}")
        for path in kept:
            key = keys[path]
            print(f"kept {cls.__name__} leftover {path.name}: a build of {key} is running (it "
                  f"holds {processed / f'.{key}.lock'}); clear again once it has finished")


def cmd_demo(args: argparse.Namespace) -> int:
    from deepstrf.demo import run_demo

    report = run_demo(path=args.path, size=args.size, seed=args.seed, n_jobs=args.n_jobs,
                      output=args.output, progress=False if args.quiet else None,
                      log=print)
    print()
    print(report.text())
    return 0


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepstrf",
        description="Public datasets of sensory neural responses behind one PyTorch API.",
        epilog="Data live under $DEEPSTRF_DATA_DIR (default: the user cache folder). "
               "CRCNS datasets need a free account: https://crcns.org/register")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("list", help="every dataset with species, area, signal, size, access")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="facts, citation, files, where the data live, what is cached")
    p.add_argument("name", help="dataset name (see `deepstrf list`)")
    p.add_argument("--path", help="the dataset's folder (default: under the data home)")
    p.add_argument("--bibtex", action="store_true",
                   help="print only BibTeX entries for the dataset and its papers")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("download", help="download and unpack a dataset's raw files")
    p.add_argument("name")
    p.add_argument("--path", help="the dataset's folder (default: under the data home)")
    p.add_argument("--username", help="CRCNS user name (the password comes from "
                                      "$CRCNS_PASSWORD or ~/.netrc, or is asked for on the "
                                      "terminal; never the command line)")
    p.add_argument("-p", "--param", action="append", metavar="NAME=VALUE",
                   help="a constructor parameter that chooses the files, e.g. "
                        "animals=GreBlu9508M,YelBlu6903F (repeatable); default: what the "
                        "dataset with default parameters needs")
    p.add_argument("--all", action="store_true",
                   help="every file of the dataset, whatever the parameters need")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("cache", help="list, size, verify, clear or compare processed cache "
                                     "entries")
    p.add_argument("action", choices=("ls", "size", "verify", "clear", "diff"),
                   help="diff A B compares two entries' arrays (exit 0 equal, 1 different)")
    p.add_argument("name", nargs="?", help="one dataset (default: all); for diff: entry A (a "
                                           "folder processed/<key>, its manifest.json, or a key)")
    p.add_argument("other", nargs="?", metavar="B", help="for diff: entry B")
    p.add_argument("--path", help="the dataset's folder (needs NAME)")
    p.add_argument("--key", help="only the entry whose key starts with this")
    p.add_argument("--yes", action="store_true", help="clear without asking")
    p.set_defaults(func=cmd_cache)

    p = sub.add_parser("demo", help="simulate an AA1-format dataset, load it, fit STRFs, report")
    p.add_argument("--path", help="where to write the simulated dataset (default: the cache)")
    p.add_argument("--size", choices=("small", "default", "large"), default="default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--output", default="deepstrf-demo.png", help="figure file (PNG)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`deepstrf list | head`): not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as err:  # the one top-level handler: no traceback unless --debug
        if args.debug:
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        if not isinstance(err, (CLIError, OSError, ValueError, TypeError, RuntimeError,
                                KeyError)):
            # an error the library did not phrase for users: name its type and the way out
            message = (f"{type(err).__name__}: {message}. Rerun with --debug for the "
                       "traceback and report it if the message does not say what to do.")
        print(f"deepstrf: error: {message}", file=sys.stderr)
        return 1
