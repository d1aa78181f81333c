"""What ``import sluicegate`` costs and loads, for this checkout and another.

Run ``python benchmarks/bench_import.py [--against /path/to/other/src]``. Each import
runs in a fresh interpreter (``python -I``, the source directory on ``sys.path``),
interleaved between the two checkouts; it prints the median wall time and the
optional dependencies the import loaded.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
OPTIONAL = ("click", "h11", "httpx", "plotly", "psutil", "redis", "rich", "sqlite3", "uvicorn")
PROBE = """
import sys, time
sys.path.insert(0, {src!r})
t = time.perf_counter()
import sluicegate
took = time.perf_counter() - t
optional = {optional!r}
print(__import__("json").dumps({{"ms": took * 1e3, "modules": len(sys.modules),
    "optional": sorted({{m.partition(".")[0] for m in sys.modules}} & set(optional))}}))
"""


def _once(src: Path) -> dict[str, object]:
    code = PROBE.format(src=str(src), optional=OPTIONAL)
    out = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--against", type=Path, help="another checkout's src directory")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    sources = {"this": SRC}
    if args.against is not None:
        sources["against"] = args.against.resolve()
    runs: dict[str, list[dict[str, object]]] = {name: [] for name in sources}
    for _ in range(args.runs):
        for name, src in sources.items():
            runs[name].append(_once(src))
    print(f"import sluicegate, fresh interpreter, median of {args.runs}")
    for name, results in runs.items():
        ms = statistics.median(float(r["ms"]) for r in results)  # type: ignore[arg-type]
        last = results[-1]
        print(
            f"  {name:<8} {ms:6.1f} ms  {last['modules']} modules  "
            f"optional loaded: {', '.join(last['optional']) or 'none'}  ({sources[name]})"  # type: ignore[arg-type]
        )


if __name__ == "__main__":
    main()
