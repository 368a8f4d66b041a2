"""Command-line entry point: argument parsing only."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from synctui import __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synctui",
        description="A terminal dashboard for copy trading. "
                    "`synctui replay FILE --json` plays a scenario headless.",
    )
    parser.add_argument("--version", action="version", version=f"synctui {__version__}")
    parser.add_argument("--db", type=Path, default=None,
                        help="the database (default: synctui.db in the user data directory)")
    parser.add_argument("--scenario", type=Path, default=None,
                        help="the desk to build into a new database (default: the demo)")
    parser.add_argument("--seed", type=int, default=7,
                        help="seed of the simulated market and leaders (default 7)")
    parser.add_argument("--no-bell", action="store_true",
                        help="alerts show a notification only, without the terminal bell")
    parser.add_argument("--config", type=Path, default=None,
                        help="exchanges, accounts and groups (TOML); default: config.toml "
                             "in the user config directory, when it exists")
    parser.add_argument("--exchange-demo", action="store_true",
                        help="the BTC perps group through the real ccxt path, against a "
                             "loopback exchange started in-process (kept in memory)")
    commands = parser.add_subparsers(dest="command")
    replay = commands.add_parser("replay", help="play a scenario file and print the final state")
    replay.add_argument("file", type=Path, help="a scenario JSON file (SPEC section 7)")
    replay.add_argument("--json", action="store_true", help="print the final state as JSON")
    replay.add_argument("--db", type=Path, default=None,
                        help="keep the replay's database here (default: a temporary one)")
    bench = commands.add_parser(
        "bench", help="measure fan-out latency, throughput, start-up, memory and the dashboard")
    bench.add_argument("--json", action="store_true", help="print the figures as JSON")
    bench.add_argument("--quick", action="store_true",
                       help="tiny sizes, a few seconds (a smoke run, not a measurement)")
    web = commands.add_parser(
        "serve", help="serve the dashboard to a browser (textual-serve); no authentication")
    web.add_argument("--host", default="127.0.0.1",
                     help="the address to listen on (default 127.0.0.1: this machine only)")
    web.add_argument("--port", type=int, default=8000, help="the port (default 8000)")
    web.add_argument("--db", type=Path, default=None,
                     help="the database (default: synctui.db in the user data directory)")
    exchange = commands.add_parser(
        "exchange", help="the loopback exchange: Binance USD-M futures' API on 127.0.0.1")
    exchange_commands = exchange.add_subparsers(dest="exchange_command", required=True)
    serve = exchange_commands.add_parser(
        "serve", help="serve the REST and private websocket API on 127.0.0.1 until Ctrl+C")
    serve.add_argument("--port", type=int, default=8765, help="the port (default 8765)")
    serve.add_argument("--accounts", type=Path, required=True,
                       help='a JSON file: {"accounts": [{"id": "A", "api_key": "...", '
                            '"secret": "...", "balance": 10000}]}')
    return parser


def _serve_exchange(port: int, accounts: Path) -> int:
    from synctui.exchange.server import serve_forever
    from synctui.exchange.venue import load_accounts

    if not 0 <= port <= 65535:
        print(f"synctui: --port {port} is not a port (0 to 65535)", file=sys.stderr)
        return 2
    try:
        loaded = load_accounts(accounts)
    except ValueError as error:
        print(f"synctui: {error}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve_forever(loaded, port))
    except OSError as error:
        print(f"synctui: cannot listen on 127.0.0.1:{port} ({error.strerror or error})",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


def _replay(file: Path, as_json: bool, db: Path | None) -> int:
    """Play a scenario headless. A file that is not a scenario is refused with exit 2
    and one line on stderr (SPEC 7); a refused step is only listed in `errors`."""
    from synctui.scenario.model import ScenarioError, load_scenario, one_line
    from synctui.scenario.report import report
    from synctui.scenario.runner import replay_with_store
    from synctui.store.database import StoreError

    def refuse(message: str) -> int:
        print(f"synctui: {one_line(message)}", file=sys.stderr)
        return 2

    shown = one_line(str(file), 200)
    try:
        scenario = load_scenario(file)
        world = asyncio.run(replay_with_store(scenario, db))
    except ScenarioError as error:
        return refuse(f"invalid scenario {shown}: {error}")
    except StoreError as error:
        return refuse(str(error))
    except ArithmeticError:
        # Steps catch their own; this is the starting world, e.g. a price that is
        # not a whole number of 1e-15 ticks within 28 digits.
        return refuse(f"invalid scenario {shown}: a number in the starting world is out "
                      "of range for exact 28-digit arithmetic")
    result = report(world)
    if as_json:
        # ASCII-escaped by json.dump: any stdout encoding can take it.
        return _write(json.dumps(result, indent=2) + "\n")
    from synctui.scenario.summary import summary

    lines = summary(result).split("\n")
    return _write("\n".join(one_line(line, limit=100_000) for line in lines))


def _write(text: str) -> int:
    """Write the replay's output: names the terminal's encoding cannot show are
    escaped rather than crashing, and a reader that went away (`| head`) ends the
    output quietly, as the Python docs advise, instead of a traceback."""
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    try:
        sys.stdout.write(text.encode(encoding, "backslashreplace").decode(encoding))
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return 0


def _live_desk(config: Path | None, exchange_demo: bool, seed: int) -> Any:
    """The live desk to run, or None for the demo on simulated brokers. A config named
    with --config must exist; the default one is used when it exists."""
    if exchange_demo:
        from synctui.exchange.demo import ExchangeDemo

        return ExchangeDemo(seed)
    from synctui.exchange.config import default_config_path, load_config
    from synctui.exchange.live import ConfigDesk

    path = config if config is not None else default_config_path()
    if config is None and not path.exists():
        return None
    return ConfigDesk(load_config(path))


def _dashboard(db: Path | None, scenario: Path | None, seed: int, bell: bool = True,
               exchange_demo: bool = False, config: Path | None = None) -> int:
    from synctui.engine.world import OpenFailed
    from synctui.tui.app import make_app

    try:
        live = _live_desk(config, exchange_demo, seed)
    except OpenFailed as error:
        print(f"synctui: {error}", file=sys.stderr)
        return 2
    app = make_app(db=db, scenario=scenario, seed=seed, bell=bell, live=live)
    app.freeze_start_up = True
    app.run()
    if app.failure is not None:  # a database it could not use: one line, exit 2
        print(f"synctui: {app.failure}", file=sys.stderr)
        from synctui.tui.serve import Refused, served

        if served() and app.startup_error is not None:  # a browser tab: say it there
            Refused(app.failure).run()
        return 2
    return app.return_code or 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "replay":
        return _replay(args.file, args.json, args.db)
    if args.command == "serve":
        if not 0 <= args.port <= 65535:
            print(f"synctui: --port {args.port} is not a port (0 to 65535)", file=sys.stderr)
            return 2
        from synctui.tui.serve import serve

        return serve(args.host, args.port, args.db, args.scenario, args.seed)
    if args.command == "exchange":
        return _serve_exchange(args.port, args.accounts)
    if args.command == "bench":
        from synctui.bench.run import main as bench

        return bench(args.quick, args.json)
    return _dashboard(args.db, args.scenario, args.seed, bell=not args.no_bell,
                      exchange_demo=args.exchange_demo, config=args.config)


if __name__ == "__main__":
    sys.exit(main())
