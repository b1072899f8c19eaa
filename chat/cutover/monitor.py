"""Poll the chat-api health endpoint and judge it against the cut-over thresholds.

Each poll: HTTP status, latency, ok (200 and ``{"status": "ok"}``). The running figures are
availability, p50/p95 latency, error rate and consecutive failures; crossing a threshold (the
migration guide's: availability >= 99.9 %, p95 < 100 ms, error rate < 0.1 %) makes the exit
code non-zero and runs ``--on-breach`` once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from dataclasses import asdict
from typing import Any, TextIO

import aiohttp

from chat.cutover.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    mask_url,
    non_negative_float,
    percent,
    positive_float,
    positive_int,
)
from chat.cutover.health import Stats, Thresholds, health_url, poll_once

PROG = "monitor.py"
DEFAULT_INTERVAL_S = 30.0
DEFAULT_TIMEOUT_S = 5.0
DEFAULT_MIN_AVAILABILITY = 99.9
DEFAULT_MAX_P95_MS = 100.0
DEFAULT_MAX_ERROR_RATE = 0.1
# Ten polls at the default interval are the guide's five minutes to detect a serious problem;
# judging fewer would let one early blip trigger --on-breach (a rollback, say).
DEFAULT_MIN_POLLS = 10


class Monitor:
    """The polling loop and everything it reports."""

    def __init__(self, args: argparse.Namespace, url: str, out: TextIO) -> None:
        self.args = args
        self.url = url
        self.shown_url = mask_url(url)
        self.out = out
        self.stats = Stats()
        self.thresholds = Thresholds(args.min_availability, args.max_p95_ms, args.max_error_rate)
        self.stop = asyncio.Event()
        self.breaches: list[str] = []
        self.hook: asyncio.subprocess.Process | None = None
        self._jsonl: TextIO | None = None

    async def run(self) -> int:
        limit = 1 if self.args.once else self.args.count
        if self.args.jsonl:
            self._jsonl = open(self.args.jsonl, "a", encoding="utf-8")  # noqa: SIM115 - whole run
        try:
            # A fresh connection per poll, as a new client would get: a full accept queue or a
            # dead listener shows up instead of hiding behind a kept-alive socket.
            connector = aiohttp.TCPConnector(force_close=True)
            async with aiohttp.ClientSession(connector=connector) as session:
                await self._loop(session, limit)
            return await self._finish()
        finally:
            if self._jsonl is not None:
                self._jsonl.close()

    async def _loop(self, session: aiohttp.ClientSession, limit: int | None) -> None:
        started = time.monotonic()
        seq = 0
        while limit is None or seq < limit:
            if seq and self.args.interval_s > 0:
                # Polls start on a fixed schedule, however long each one took.
                delay = started + seq * self.args.interval_s - time.monotonic()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stop.wait(), delay)
            if self.stop.is_set():
                break
            seq += 1
            result = await poll_once(session, self.url, seq, self.args.timeout_s)
            self.stats.add(result)
            print(result.line(), file=self.out, flush=True)
            self._record({"type": "poll", "url": self.shown_url, **asdict(result)})
            if self.stats.polls >= self.args.min_polls:
                await self._judge()

    async def _judge(self) -> None:
        breaches = self.thresholds.breaches(self.stats)
        if breaches and not self.breaches:
            self.breaches = breaches
            print("BREACH: " + "; ".join(breaches), file=self.out, flush=True)
            await self._start_hook(breaches)
        elif breaches:
            self.breaches = breaches

    async def _start_hook(self, breaches: list[str]) -> None:
        command = self.args.on_breach
        if not command:
            return
        env = dict(os.environ, MONITOR_URL=self.shown_url, MONITOR_BREACH="; ".join(breaches))
        print(f"running --on-breach command: {command}", file=sys.stderr, flush=True)
        try:
            self.hook = await asyncio.create_subprocess_shell(
                command, stdin=asyncio.subprocess.DEVNULL, env=env
            )
        except OSError as exc:
            print(f"error: --on-breach command could not start: {exc}", file=sys.stderr)

    async def _finish(self) -> int:
        if self.stats.polls:
            # Whatever the number of polls, the end of the run is judged.
            await self._judge()
        if self.hook is not None:
            code = await self.hook.wait()
            print(f"--on-breach command exited with {code}", file=sys.stderr)
        self._summary()
        if not self.stats.polls:
            print("result: NO DATA (stopped before the first poll)", file=self.out)
            return EXIT_FAILURE
        if self.breaches:
            print("result: BREACH", file=self.out)
            return EXIT_FAILURE
        print("result: OK", file=self.out)
        return EXIT_OK

    def _summary(self) -> None:
        stats = self.stats
        figures = stats.figures()
        current = self.thresholds.breaches(stats) if stats.polls else []
        p50, p95, worst = (figures[k] for k in ("p50_ms", "p95_ms", "max_ms"))

        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f} ms"

        limits = self.thresholds
        lines = [
            f"summary: {self.shown_url}",
            f"  polls {stats.polls}, ok {stats.ok}, availability {stats.availability:.3f} %"
            f" (min {limits.min_availability:g} %), error rate {stats.error_rate:.3f} %"
            f" (max {limits.max_error_rate:g} %)",
            f"  latency p50 {ms(p50)}, p95 {ms(p95)} (max allowed {limits.max_p95_ms:g} ms),"
            f" slowest {ms(worst)}",
            f"  consecutive failures {stats.consecutive_failures}"
            f" (longest run {stats.longest_failure_run})",
        ]
        lines += [f"  breach: {text}" for text in self.breaches]
        print("\n".join(lines), file=self.out, flush=True)
        self._record(
            {
                "type": "summary",
                "url": self.shown_url,
                **figures,
                "breaches": self.breaches,
                "breached_at_end": current,
            }
        )

    def _record(self, entry: dict[str, Any]) -> None:
        if self._jsonl is not None:
            self._jsonl.write(json.dumps(entry) + "\n")
            self._jsonl.flush()


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The command line (see --help)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Poll {URL}/health and report availability, p50/p95 latency, error rate and "
            "consecutive failures: a line per poll and a summary at the end (after --once, "
            "--count polls, or Ctrl-C). A poll is ok when the answer is 200 with "
            '{"status": "ok"}.'
        ),
        epilog=(
            "Exit codes: 0 no threshold breached; 1 a threshold breached (or no poll made); "
            "2 bad command line. --on-breach runs once, through the shell, when a breach is "
            "first seen, with MONITOR_URL and MONITOR_BREACH in its environment."
        ),
    )
    parser.add_argument("--url", required=True, help="the service root (or its /health URL)")
    parser.add_argument(
        "--interval-s",
        type=non_negative_float,
        default=DEFAULT_INTERVAL_S,
        metavar="S",
        help=f"seconds between poll starts (default {DEFAULT_INTERVAL_S:g})",
    )
    runs = parser.add_mutually_exclusive_group()
    runs.add_argument("--once", action="store_true", help="poll once and stop")
    runs.add_argument(
        "--count",
        type=positive_int,
        metavar="N",
        help="poll N times and stop (default: until Ctrl-C)",
    )
    parser.add_argument(
        "--timeout-s",
        type=positive_float,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"per-request timeout (default {DEFAULT_TIMEOUT_S:g})",
    )
    _add_threshold_options(parser)
    return parser


def _add_threshold_options(parser: argparse.ArgumentParser) -> None:
    """The thresholds, --min-polls, --on-breach and --jsonl."""
    parser.add_argument(
        "--min-availability",
        type=percent,
        default=DEFAULT_MIN_AVAILABILITY,
        metavar="PCT",
        help=f"breach below this availability, percent (default {DEFAULT_MIN_AVAILABILITY:g})",
    )
    parser.add_argument(
        "--max-p95-ms",
        type=non_negative_float,
        default=DEFAULT_MAX_P95_MS,
        metavar="MS",
        help=f"breach above this p95 latency (default {DEFAULT_MAX_P95_MS:g})",
    )
    parser.add_argument(
        "--max-error-rate",
        type=percent,
        default=DEFAULT_MAX_ERROR_RATE,
        metavar="PCT",
        help=f"breach above this error rate, percent (default {DEFAULT_MAX_ERROR_RATE:g})",
    )
    parser.add_argument(
        "--min-polls",
        type=positive_int,
        default=DEFAULT_MIN_POLLS,
        metavar="N",
        help="judge the thresholds during the run only once N polls were made "
        f"(default {DEFAULT_MIN_POLLS}); the end of a run is always judged",
    )
    parser.add_argument(
        "--on-breach",
        metavar="COMMAND",
        help="shell command to run once when a breach is first detected",
    )
    parser.add_argument(
        "--jsonl",
        metavar="FILE",
        help='append each poll and the summary as JSON lines ("type": "poll" / "summary")',
    )


async def amain(argv: list[str] | None = None, *, handle_signals: bool = False, prog: str = PROG) -> int:
    """The monitor inside a running event loop (tests call this); see ``--help``."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        url = health_url(args.url)
    except ValueError as exc:
        print(f"error: --url: {exc}", file=sys.stderr)
        return EXIT_USAGE
    monitor = Monitor(args, url, sys.stdout)
    loop = asyncio.get_running_loop()
    if handle_signals:
        # Ctrl-C or SIGTERM ends the run at the next poll boundary and still prints the summary.
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, monitor.stop.set)
    try:
        limit = "once" if args.once else f"{args.count} polls" if args.count else "until Ctrl-C"
        print(f"monitor: {monitor.shown_url} every {args.interval_s:g} s, {limit}", file=sys.stderr)
        return await monitor.run()
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        if handle_signals:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)


def main(argv: list[str] | None = None, *, prog: str = PROG) -> int:
    """Run the monitor; see ``--help``."""
    try:
        return asyncio.run(amain(argv, handle_signals=sys.platform != "win32", prog=prog))
    except KeyboardInterrupt:
        return EXIT_FAILURE
