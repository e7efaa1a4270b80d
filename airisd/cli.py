"""The ``airisd`` command line."""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from pathlib import Path
from typing import Any

from airisd import __version__
from airisd.backup import register as register_backup_commands
from airisd.cli_admin import register as register_admin_commands
from airisd.cli_buffer import register as register_buffer_commands
from airisd.config import Config, build_config, load_config, load_dotenv
from airisd.errors import ConfigError

SYSTEM_CONFIG = Path("/etc/airisd/airisd.toml")


def default_config_path() -> str | None:
    env = os.environ.get("AIRISD_CONFIG")
    if env:
        return env
    if SYSTEM_CONFIG.is_file():
        return str(SYSTEM_CONFIG)
    return None  # the built-in sample: runs on a bare machine


def _load(args: argparse.Namespace) -> Config:
    path = args.config or default_config_path()
    if path is None:
        from airisd.sample import sample_config

        load_dotenv(Path(".env"))
        return build_config(tomllib.loads(sample_config()), source="<built-in sample>",
                            overrides=list(getattr(args, "set", None) or []),
                            role=getattr(args, "role", None), data_dir=getattr(args, "data_dir", None))
    return load_config(path, overrides=list(getattr(args, "set", None) or []),
                       role=getattr(args, "role", None), data_dir=getattr(args, "data_dir", None))


def cmd_run(args: argparse.Namespace) -> int:
    import anyio

    from airisd.daemon import Daemon
    from airisd.logsetup import setup_logging
    from airisd.registry import build_registry

    config = _load(args)
    setup_logging(level=config.agent.log_level, fmt=config.agent.log_format)
    daemon = Daemon(config, build_registry(), config_loader=lambda: _load(args))
    daemon.build()
    anyio.run(daemon.run, backend="asyncio", backend_options={"use_uvloop": True})
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    from airisd.daemon import Daemon
    from airisd.registry import build_registry

    config = _load(args)
    daemon = Daemon(config, build_registry())
    daemon.build()
    kinds: dict[str, int] = {}
    for inst in daemon.instances:
        kinds[inst.section] = kinds.get(inst.section, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "no plugins"
    print(f"{config.source}: OK (roles: {', '.join(config.roles())}; {summary})")
    return 0


def cmd_config_sample(args: argparse.Namespace) -> int:
    from airisd.sample import sample_config

    sys.stdout.write(sample_config())
    return 0


def cmd_plugins_list(args: argparse.Namespace) -> int:
    from airisd.registry import build_registry

    registry = build_registry()
    rows = [(i.kind, i.name, i.package, i.version, i.cls.description) for i in registry.all()]
    widths = [max(len(str(r[c])) for r in [("KIND", "NAME", "PACKAGE", "VERSION", ""), *rows]) for c in range(4)]
    header = ("KIND", "NAME", "PACKAGE", "VERSION")
    print("  ".join(f"{h:<{w}}" for h, w in zip(header, widths, strict=True)) + "  DESCRIPTION")
    for r in rows:
        print(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]:<{widths[3]}}  {r[4]}")
    for b in registry.broken:
        print(f"BROKEN  {b.entry_point}  {b.package}: {b.error}", file=sys.stderr)
    return 0


def cmd_plugins_info(args: argparse.Namespace) -> int:
    from importlib import resources

    from airisd.registry import build_registry

    registry = build_registry()
    matches = [i for i in registry.all() if i.name == args.name and (args.kind is None or i.kind == args.kind)]
    if not matches:
        for b in registry.broken:  # a third-party package that failed to load: say which and why
            if b.entry_point == args.name:
                raise ConfigError(f"plugin {args.name!r} failed to load from package {b.package}: {b.error}")
        raise ConfigError(f"no plugin named {args.name!r} (see `airisd plugins list`)")
    for info in matches:
        print(f"# {info.kind} {info.name} ({info.package} {info.version})\n")
        pkg = info.module.rsplit(".", 1)[0] if not info.module.endswith(info.name) else info.module
        for fname in ("README.md", "sample.toml"):
            try:
                print(resources.files(pkg).joinpath(fname).read_text(encoding="utf-8"))
            except (FileNotFoundError, ModuleNotFoundError, TypeError):
                print(f"({fname} not shipped by this plugin)\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="airisd",
        description="One observability daemon: metrics, logs, traces and alerts, with an embedded store.",
        epilog="Quick start: airisd run   (all roles on 127.0.0.1:8001-8004, data in ./var)",
    )
    parser.add_argument("--version", action="version", version=f"airisd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def config_args(p: argparse.ArgumentParser, *, overrides: bool = True) -> None:
        p.add_argument("--config", "-c", metavar="FILE",
                       help="TOML config (default: $AIRISD_CONFIG, /etc/airisd/airisd.toml, or the built-in sample)")
        if overrides:
            p.add_argument("--role", help="metrics, log, trace, alert or all (overrides agent.role)")
            p.add_argument("--data-dir", dest="data_dir", metavar="DIR", help="overrides agent.data_dir")
            p.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                           help="override any config key, e.g. --set http.max_body_bytes=1048576 (repeatable)")

    run = sub.add_parser("run", help="run the daemon", description="Run the daemon in the foreground. "
                         "SIGTERM or SIGINT stop accepting, flush queues and exit 0.")
    config_args(run)
    run.set_defaults(fn=cmd_run)

    cfg = sub.add_parser("config", help="check or print configuration")
    cfg_sub = cfg.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = cfg_sub.add_parser("check", help="validate a config file and every plugin section in it; exit 0 if valid")
    config_args(check)
    check.set_defaults(fn=cmd_config_check)
    sample = cfg_sub.add_parser("sample", help="print a complete sample config with every option documented")
    sample.set_defaults(fn=cmd_config_sample)

    plugins = sub.add_parser("plugins", help="list installed plugins")
    pl_sub = plugins.add_subparsers(dest="plugins_command", metavar="ACTION", required=True)
    pl_list = pl_sub.add_parser("list", help="name, kind, package and version of every installed plugin")
    pl_list.set_defaults(fn=cmd_plugins_list)
    pl_info = pl_sub.add_parser("info", help="print a plugin's README and sample config")
    pl_info.add_argument("name")
    pl_info.add_argument("--kind", choices=["input", "processor", "output", "alerting"])
    pl_info.set_defaults(fn=cmd_plugins_info)
    register_admin_commands(sub, config_args)  # airisd user ..., airisd token ... (issue 6)
    register_backup_commands(sub)  # airisd backup, airisd restore (issue 9)
    register_buffer_commands(sub, config_args)  # airisd buffer inspect|repair (issue 7)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    fn: Any = getattr(args, "fn", None)
    if fn is None:
        parser.print_help()
        return 2
    try:
        return int(fn(args) or 0)
    except ConfigError as exc:
        print(f"airisd: error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `airisd plugins list | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
