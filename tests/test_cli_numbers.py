"""Every flag that takes a number, fed bad numbers: one ``Error:`` line and exit code 2.

Table-driven over ``serve``, ``fetch``, ``swarm`` and ``doctor``: overflow (309
nines), NaN, infinity, negatives, exponents and absurd magnitudes. A bad value that
got through would go on to run the command, which every row is set up to notice:
``serve`` then fails on ``--app`` (the message names the wrong flag), ``fetch`` and
``swarm`` on a closed port (another exit code), ``doctor`` on its command.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from sluicegate.cli import main
from sluicegate.engine.response import defaults

NINES = "9" * 309
DEAD = "http://127.0.0.1:9/"  # the discard port: nothing listens there on a test box

SIZE_BAD = [NINES, "-1", "nan", "inf", "1e3", "2000000G", "1.5.5K", ""]
RATE_BAD = [NINES, "-1K", "nan", "inf", "0", "2000000G/s", "1e9"]
DURATION_BAD = [NINES, "-1s", "nan", "1e3", "9999999h", "400d", ""]
INT_BAD = [NINES, "-1", "nan", "1e3", "1.5", ""]

# command -> (the arguments that make a row reach the flag under test, flags by kind)
COMMANDS: dict[str, tuple[list[str], dict[str, list[str]]]] = {
    "serve": (
        ["--app", "no_such_module_anywhere:app", "--port", "0"],
        {
            "size": ["--sndbuf", "--max-buffered", "--notsent-lowat", "--notsent-lowat-until"],
            "rate": ["--min-rate"],
            "duration": [
                "--stall-timeout",
                "--rate-window",
                "--grace",
                "--header-timeout",
                "--body-timeout",
            ],
            "int": ["--port", "--max-streams", "--max-streams-per-client"],
        },
    ),
    "fetch": (
        [DEAD],
        {
            "size": ["--rcvbuf", "--mss"],
            "rate": ["--limit-rate"],
            "duration": ["--pause-after", "--pause-for", "--timeout"],
            "int": [],
        },
    ),
    "swarm": (
        [DEAD],
        {
            "size": [],
            "rate": [],
            "duration": ["--duration", "--timeout"],
            "int": ["--clients", "--requests"],
        },
    ),
    "doctor": (
        ["--", sys.executable, "-c", "pass"],
        {
            "size": [],
            "rate": [],
            "duration": [
                "--duration",
                "--interval",
                "--net-interval",
                "--port-timeout",
                "--grace",
                "--idle",
            ],
            "int": ["--port"],
        },
    ),
}
BAD = {"size": SIZE_BAD, "rate": RATE_BAD, "duration": DURATION_BAD, "int": INT_BAD}

ROWS = [
    pytest.param(command, [flag, value], id=f"{command} {flag} {value[:12]!r}")
    for command, (_, kinds) in COMMANDS.items()
    for kind, flags in kinds.items()
    for flag in flags
    for value in BAD[kind]
    # fetch --pause-after needs --pause-for and the other way round: give the partner.
] + [
    pytest.param("serve", ["--sndbuf", "3G"], id="serve --sndbuf 3G"),
    pytest.param("serve", ["--sndbuf", "2047M"], id="serve --sndbuf 2047M"),
    pytest.param("serve", ["--min-rate", NINES + "/s"], id="serve --min-rate nines/s"),
    pytest.param("serve", ["--header-timeout", "0"], id="serve --header-timeout 0"),
    pytest.param("serve", ["--body-timeout", "forever"], id="serve --body-timeout forever"),
    pytest.param("fetch", ["--rcvbuf", "3G"], id="fetch --rcvbuf 3G"),
    pytest.param("fetch", ["--mss", "70000"], id="fetch --mss 70000"),
    pytest.param("fetch", ["--schedule", f"1s:pause={NINES}"], id="fetch schedule pause"),
    pytest.param("fetch", ["--schedule", f"{NINES}:stop"], id="fetch schedule time"),
    pytest.param("fetch", ["--schedule", f"1s:rate={NINES}"], id="fetch schedule rate"),
    pytest.param("fetch", ["--schedule", "1s:rate=nan"], id="fetch schedule rate nan"),
    pytest.param("swarm", ["--mix", f"slow={NINES}"], id="swarm mix slow rate"),
    pytest.param("swarm", ["--mix", f"fast:{NINES}"], id="swarm mix weight nines"),
    pytest.param("swarm", ["--mix", "fast:" + "9" * 5000], id="swarm mix weight 5000 digits"),
    pytest.param("swarm", ["--mix", "fast:-1"], id="swarm mix weight negative"),
    pytest.param("swarm", ["--clients", "1000000000"], id="swarm clients absurd"),
    pytest.param("doctor", ["--interval", "0"], id="doctor interval 0"),
]


@pytest.mark.parametrize(("command", "args"), ROWS)
def test_bad_numbers_are_one_line_exit_2(command: str, args: list[str], tmp_path: Path) -> None:
    base, _ = COMMANDS[command]
    if command == "doctor":  # a value that got through must not write into the checkout
        args = [*args, "--output", str(tmp_path / "report.html")]
    flag = args[0]
    if command == "fetch" and flag in ("--pause-after", "--pause-for"):
        partner = "--pause-for" if flag == "--pause-after" else "--pause-after"
        args = [*args, partner, "1s"]
    # doctor's command goes last, after "--"
    argv = [command, *args, *base] if command == "doctor" else [command, *base, *args]
    result = CliRunner().invoke(main, argv)
    output = result.output
    assert result.exit_code == 2, (argv, result.exit_code, output, result.exception)
    assert "No such option" not in output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), output
    assert "Traceback" not in output
    if command == "serve":
        assert "--app" not in lines[0], output  # the value got past its own flag
        assert defaults.guard is None and defaults.admission is None


def test_serve_sndbuf_3g_is_one_line_in_a_real_process() -> None:
    """The case from the issue, run the way a person runs it."""
    proc = subprocess.run(
        [sys.executable, "-m", "sluicegate", "serve", "--port", "0", "--sndbuf", "3G"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().startswith("Error: --sndbuf:"), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not proc.stdout
