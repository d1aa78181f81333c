"""What ``sluicegate demo`` runs: the article's cases, shortened or exact (sans-IO).

The article makes 20 MiB chunks at 20 MiB/s (and 100 MiB/s) for a client reading
10 MiB/s, 20 chunks each. :func:`plan_cases` returns those runs; by default they
are shortened to finish in about two minutes, with ``full=True`` they are the
article's. The figures the article read off its Clinic.js charts are in
:data:`ARTICLE`, keyed like the runs, to print beside ours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from sluicegate.demo.livefeed import FEED_POLICIES
from sluicegate.errors import ConfigError

__all__ = [
    "ARTICLE",
    "FEED_POLICIES",
    "NODE_FILES",
    "RATES",
    "SCENARIOS",
    "Case",
    "FeedCase",
    "plan_cases",
    "plan_feed_cases",
]

MiB = 1024 * 1024
#: The backpressure scenarios, in the article's order (the demo app's paths).
SCENARIOS = ("ignore-backpressure", "wait", "pull-source", "generator", "leaky")
#: Producer rates, bytes/s.
RATES = (20 * MiB, 100 * MiB)
#: The Node server of each scenario, in ``demo/node``.
NODE_FILES = {
    "hello": "01-hello.js",
    "ignore-backpressure": "02-backpressure.js",
    "wait": "03-drain.js",
    "pull-source": "04-readable.js",
    "generator": "05-pipe.js",
    "leaky": "leaky.js",
}
#: What the article shows for Node (peak RSS above idle, from its charts), by
#: (scenario, producer MiB/s). It ran 20 chunks; the default demo runs fewer.
ARTICLE: dict[tuple[str, int], str] = {
    ("ignore-backpressure", 20): "~180 MB",
    ("wait", 20): "~40 MB",
    ("pull-source", 20): "~40 MB",
    ("generator", 20): "stairs",
    ("ignore-backpressure", 100): "~1.7 GB",
    ("generator", 100): "~200–300 MB",
}
#: A live feed is made of small messages; the leaky scenario sends 1 MiB ones at the
#: same byte rate, through a channel of this many bytes.
LEAKY_MESSAGE = 1 * MiB
LEAKY_LIMIT = 4 * MiB


@dataclass(frozen=True, slots=True)
class Case:
    """One run: a server answering one slow client.

    >>> Case("generator", rate=20 * MiB, chunk=20 * MiB, count=4).path
    '/generator?chunk=20971520&rate=20971520&count=4'
    """

    scenario: str
    rate: int
    chunk: int
    count: int
    #: the client's reading rate, bytes/s (None: as fast as it can)
    client_rate: int | None = 10 * MiB
    #: stop the client after this many seconds (None: read to the end)
    window: float | None = None
    #: ``python`` (the demo app on uvicorn) or ``node`` (``demo/node``)
    server: str = "python"
    #: the anti-pattern's safety cap on its backlog, bytes
    cap: int = 1536 * MiB
    #: the leaky channel's budget, bytes (0: the app's default)
    limit: int = 0
    pause_after: float | None = None
    pause_for: float | None = None

    @property
    def path(self) -> str:
        """The request path with its query."""
        q: dict[str, int] = {"chunk": self.chunk, "rate": self.rate, "count": self.count}
        if self.scenario == "ignore-backpressure" and self.cap != 1536 * MiB:
            q["cap"] = self.cap
        if self.limit:
            q["limit"] = self.limit
        return f"/{self.scenario}?{urlencode(q)}"

    @property
    def rate_mib(self) -> int:
        """The producer's rate in MiB/s (the article's "MB/s")."""
        return round(self.rate / MiB)

    @property
    def key(self) -> str:
        """A file-name-safe identifier, e.g. ``python-generator-20M``."""
        pause = "-pause" if self.pause_for else ""
        return f"{self.server}-{self.scenario}-{self.rate_mib}M{pause}"

    @property
    def total(self) -> int:
        """Bytes the producer makes when nothing stops it."""
        return self.chunk * self.count

    @property
    def expected_seconds(self) -> float:
        """How long the run should take, for the safety timeout."""
        produce = self.total / self.rate
        read = self.total / self.client_rate if self.client_rate else produce
        seconds = max(produce, read) + (self.pause_for or 0.0)
        return min(seconds, self.window) if self.window else seconds


def _scenario_case(
    scenario: str, rate: int, chunk: int, count: int, window: float | None, server: str
) -> Case:
    if scenario == "leaky":
        # Same bytes at the same rate, cut in live-feed-sized messages.
        messages = max(1, chunk * count // LEAKY_MESSAGE)
        return Case(
            scenario, rate, LEAKY_MESSAGE, messages, window=window, server=server, limit=LEAKY_LIMIT
        )
    return Case(scenario, rate, chunk, count, window=window, server=server)


def plan_cases(
    *,
    full: bool = False,
    scenarios: Sequence[str] = SCENARIOS,
    servers: Sequence[str] = ("python",),
    chunks: int | None = None,
    pause: bool = True,
) -> list[Case]:
    """The runs of one demo, grouped by rate, Node beside Python for each scenario.

    Default (about two minutes): 4 chunks of 20 MiB at 20 MiB/s read whole, and 10
    chunks of 20 MiB at 100 MiB/s with the client stopped after 6 s (the producer is
    done after 2 s, which is when the anti-pattern peaks). ``full``: the article's 20
    chunks, 20 MiB at 20 MiB/s and 100 MiB at 100 MiB/s, read whole. ``chunks``
    overrides the count of the 20 MiB/s runs. ``pause`` adds the article's 06: a
    client that pauses reading while the generator streams.

    >>> [c.key for c in plan_cases(scenarios=["generator"], pause=False)]
    ['python-generator-20M', 'python-generator-100M']
    """
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        raise ConfigError(f"unknown scenario {unknown[0]!r}; choose from {', '.join(SCENARIOS)}")
    bad = [s for s in servers if s not in ("python", "node")]
    if bad:
        raise ConfigError(f"unknown server {bad[0]!r}; choose python or node")
    if chunks is not None and not 1 <= chunks <= 1000:
        raise ConfigError(f"chunks must be from 1 to 1000, not {chunks}")
    slow_count = chunks or (20 if full else 4)
    if full:
        fast: tuple[int, int, float | None] = (100 * MiB, 20, None)
    else:
        fast = (20 * MiB, 10, 6.0)
    cases: list[Case] = []
    for rate, (chunk, count, window) in (
        (20 * MiB, (20 * MiB, slow_count, None)),
        (100 * MiB, fast),
    ):
        for scenario in scenarios:
            for server in servers:
                cases.append(_scenario_case(scenario, rate, chunk, count, window, server))
    if pause:
        for server in servers:
            # 06: 1 MiB chunks at 20 MiB/s; the client reads 10 MiB/s, pauses at 1 s
            # for 4 s (the article: 19 s), then reads the rest.
            pause_for = 19.0 if full else 4.0
            cases.append(
                Case(
                    "generator",
                    20 * MiB,
                    MiB,
                    40,
                    server=server,
                    pause_after=1.0,
                    pause_for=pause_for,
                )
            )
    return cases


@dataclass(frozen=True, slots=True)
class FeedCase:
    """One live-feed run: ``subscribers`` on one policy, ``slow`` % of them slow.

    The defaults are the demo's: 1,000 subscribers, 10 % reading 16 KiB/s, 10 events/s
    of 16 KiB for 4 s (160 KiB/s each: enough for a slow subscriber to fill the kernel's
    and the server's buffers, about 200 KiB, then its own 64 KiB, within the run).

    >>> FeedCase("drop_oldest").path, FeedCase("wait").key
    ('/feed/drop_oldest', 'python-feed-wait')
    """

    policy: str
    subscribers: int = 1000
    slow: int = 10
    slow_rate: int = 16 * 1024
    rate: float = 10.0
    size: int = 16 * 1024
    seconds: float = 4.0
    #: the demo's runner starts the Python demo app for every case
    server: str = "python"
    scenario: str = "feed"

    @property
    def path(self) -> str:
        """The subscription path."""
        return f"/feed/{self.policy}"

    @property
    def key(self) -> str:
        """A file-name-safe identifier, e.g. ``python-feed-drop_oldest``."""
        return f"{self.server}-feed-{self.policy}"

    @property
    def events(self) -> int:
        """Events the publisher is asked to make."""
        return max(1, round(self.rate * self.seconds))

    @property
    def expected_seconds(self) -> float:
        """How long the run should take, for the safety timeout (connecting included)."""
        return self.seconds * 2 + 20


def plan_feed_cases(
    policies: Sequence[str] = FEED_POLICIES, *, subscribers: int = 1000, seconds: float = 4.0
) -> list[FeedCase]:
    """The live-feed runs: one per policy, the same load on each.

    >>> [c.policy for c in plan_feed_cases()]
    ['wait', 'drop_oldest', 'disconnect']
    """
    unknown = [p for p in policies if p not in FEED_POLICIES]
    if unknown:
        raise ConfigError(f"unknown policy {unknown[0]!r}; choose from {', '.join(FEED_POLICIES)}")
    if not 10 <= subscribers <= 5000:
        raise ConfigError(f"subscribers must be from 10 to 5000, not {subscribers}")
    return [FeedCase(p, subscribers=subscribers, seconds=seconds) for p in policies]
