"""``airisd buffer inspect|repair``: look into, and fix, outputs' disk buffers while the daemon is
stopped (inspect also works while it runs)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from airisd.errors import ConfigError

EPILOG = """\
A disk buffer lives in <data_dir>/buffers/<output alias or name>-<signal>/ (or under the output's
buffer.directory): segment files of checksummed records, a cursor file saying where delivery
resumes, and corrupt/ with copies of damaged segments as they were found. The daemon recovers
each buffer when it starts, so repair is only needed to clean up without starting it.
"""


def _dirs(args: argparse.Namespace) -> list[Path]:
    from airisd.buffer.inspect import buffer_dirs
    from airisd.cli import _load

    config = _load(args)
    dirs = buffer_dirs(config.outputs, Path(config.agent.data_dir), args.output or "")
    if not dirs:
        what = f" for output {args.output!r}" if args.output else ""
        raise ConfigError(f"no disk buffer found{what} under {Path(config.agent.data_dir) / 'buffers'}")
    return dirs


def cmd_inspect(args: argparse.Namespace) -> int:
    from airisd.buffer.inspect import inspect_dir

    reports = [inspect_dir(d) for d in _dirs(args)]
    if args.json:
        print(json.dumps(reports, indent=2))
    else:
        for r in reports:
            state = "in use by a running airisd" if r["in_use"] else "not in use"
            print(f"{r['directory']} ({state})")
            print(f"  segments: {len(r['segments'])} ({sum(s['bytes'] for s in r['segments'])} bytes on disk)")
            print(f"  waiting:  {r['events']} events, {r['bytes']} bytes, oldest {r['oldest_age_seconds']} s")
            for f in r["findings"]:
                print(f"  PROBLEM:  {f['kind']} in {f['segment']} at offset {f['offset']}: {f['detail']}")
            for q in r["quarantined"]:
                print(f"  damaged segment as found, kept for a post-mortem: corrupt/{q}")
    return 1 if any(r["findings"] for r in reports) else 0


def cmd_repair(args: argparse.Namespace) -> int:
    from airisd.buffer.disk import BufferLocked
    from airisd.buffer.inspect import repair_dir

    for d in _dirs(args):
        try:
            r = repair_dir(d)
        except BufferLocked as exc:
            raise ConfigError(f"refusing to repair: {exc}") from None
        if args.json:
            print(json.dumps(r))
            continue
        print(f"{r['directory']}: {r['events']} events to deliver")
        for f in r["findings"]:
            print(f"  {f['kind']} in {f['segment']} at offset {f['offset']} ({f['detail']}): {f['action']}")
        if not r["findings"]:
            print("  nothing to repair")
    return 0


def register(sub: Any, config_args: Callable[..., None]) -> None:
    buf = sub.add_parser("buffer", help="inspect or repair outputs' disk buffers",
                         description="Inspect or repair outputs' disk buffers.", epilog=EPILOG,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = buf.add_subparsers(dest="buffer_command", metavar="ACTION", required=True)
    for name, fn, text in [
        ("inspect", cmd_inspect, "per buffer: segments, waiting events and bytes, oldest event's age, torn or "
                                 "corrupt segments found (read-only; exit 1 if any problem)"),
        ("repair", cmd_repair, "truncate torn tails, copy damaged segments to corrupt/ and skip their bad records, "
                               "as the daemon does at start; refused while a daemon uses the buffer"),
    ]:
        p = actions.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".", epilog=EPILOG,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        config_args(p)
        p.add_argument("--output", metavar="NAME", help="only this output (its alias or plugin name)")
        p.add_argument("--json", action="store_true", help="print JSON instead of text")
        p.set_defaults(fn=fn)


