"""Command-line entry point: argument parsing only."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path

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
    commands = parser.add_subparsers(dest="command")
    replay = commands.add_parser("replay", help="play a scenario file and print the final state")
    replay.add_argument("file", type=Path, help="a scenario JSON file (SPEC section 7)")
    replay.add_argument("--json", action="store_true", help="print the final state as JSON")
    replay.add_argument("--db", type=Path, default=None,
                        help="keep the replay's database here (default: a temporary one)")
    return parser


def _replay(file: Path, as_json: bool, db: Path | None) -> int:
    from synctui.scenario.model import ScenarioError, load_scenario
    from synctui.scenario.report import report
    from synctui.scenario.runner import replay_with_store
    from synctui.store.database import StoreError

    try:
        scenario = load_scenario(file)
    except ScenarioError as error:
        print(f"synctui: invalid scenario {file}: {error}", file=sys.stderr)
        return 2
    try:
        world = asyncio.run(replay_with_store(scenario, db))
    except ScenarioError as error:
        print(f"synctui: invalid scenario {file}: {error}", file=sys.stderr)
        return 2
    except StoreError as error:
        print(f"synctui: {error}", file=sys.stderr)
        return 2
    result = report(world)
    if as_json:
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    from synctui.scenario.summary import summary

    sys.stdout.write(summary(result))
    return 0


def _dashboard(db: Path | None, scenario: Path | None, seed: int) -> int:
    from synctui.tui.app import make_app

    app = make_app(db=db, scenario=scenario, seed=seed)
    app.run()
    if app.failure is not None:  # a database it could not use: one line, exit 2
        print(f"synctui: {app.failure}", file=sys.stderr)
        return 2
    return app.return_code or 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "replay":
        return _replay(args.file, args.json, args.db)
    return _dashboard(args.db, args.scenario, args.seed)


if __name__ == "__main__":
    sys.exit(main())
