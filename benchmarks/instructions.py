"""Instructions per follower order, counted by valgrind: a figure the VM's drift
does not move (wall-clock times here vary by a third between runs).

    .venv/bin/python benchmarks/instructions.py [FOLLOWERS] [FILLS]

Runs the benchmark's fan-out (`synctui.bench.fanout`) twice under
`valgrind --tool=cachegrind`: 4 warm-up fills alone, then the warm-up and FILLS
more, and prints (difference) / (FILLS x FOLLOWERS). Every thread counts (the
store's checkpoints too). Needs valgrind (`apt-get install valgrind`); at 200
followers and 10 fills it takes about a minute.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

WARMUP = 4


async def _child(followers: int, fills: int) -> None:
    from synctui.bench.fanout import fan_out

    with tempfile.TemporaryDirectory() as folder:
        await fan_out(Path(folder), followers, fills, warmup=WARMUP, pause=0)


def _count(followers: int, fills: int) -> int:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    run = subprocess.run(  # noqa: S603 - our own interpreter and this file, no input
        [valgrind, "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
         sys.executable, __file__, "--child", str(followers), str(fills)],
        capture_output=True, text=True, check=True)
    found = re.search(r"I\s+refs:\s+([\d,]+)", run.stderr)
    if found is None:
        raise SystemExit(f"valgrind printed no instruction count:\n{run.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        asyncio.run(_child(int(sys.argv[2]), int(sys.argv[3])))
        return
    followers = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    fills = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    base, more = _count(followers, 0), _count(followers, fills)
    per_fan_out = (more - base) / fills
    print(f"{followers} followers: {per_fan_out / 1e6:.1f} M instructions per fan-out, "
          f"{per_fan_out / followers:,.0f} per follower order")


if __name__ == "__main__":
    main()
