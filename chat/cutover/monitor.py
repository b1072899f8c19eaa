"""Poll the chat-api health endpoint (and a WebSocket ping) and judge it as PROTOCOL 8 says.

Each poll: HTTP status, latency, ok (200 and ``{"status": "ok"}``; a 503 failing only the ``ai``
check is reported as AI degraded, not as an outage), then a ``ping`` over ``/ws`` timed to its
``pong``. A breach is ``--fail-after`` consecutive failed polls, a failure rate over a full
sliding ``--window`` above ``--window-max-error-rate``, or a p95 latency (health or WebSocket,
over the window) above ``--max-p95-ms``; never one blip. Each breach (until the figures
recover) prints ``BREACH`` and runs ``--on-breach`` once; the exit code is then 1. The guide's
availability / error-rate SLO over the whole run (one count, two names) is reported.
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
    mask_urls_in,
    non_negative_float,
    percent,
    positive_float,
    positive_int,
)
from chat.cutover.health import Poll, Stats, Thresholds, health_url, ping_ws, poll_once, ws_url

PROG = "monitor.py"
DEFAULT_INTERVAL_S = 30.0
DEFAULT_TIMEOUT_S = 5.0
DEFAULT_MIN_AVAILABILITY = 99.9
DEFAULT_MAX_P95_MS = 100.0
DEFAULT_MAX_ERROR_RATE = 0.1
DEFAULT_MIN_POLLS = 1
DEFAULT_FAIL_AFTER = 3
DEFAULT_WINDOW = 100
DEFAULT_WINDOW_MAX_ERROR_RATE = 5.0


class Monitor:
    """The polling loop and everything it reports."""

    def __init__(self, args: argparse.Namespace, url: str, out: TextIO) -> None:
        self.args = args
        self.url = url
        self.shown_url = mask_url(url)
        self.out = out
        self.ws_url = None if args.no_ws else (args.ws_url or ws_url(url))
        self.stats = Stats(window=args.window)
        self.thresholds = Thresholds(
            args.fail_after, args.window_max_error_rate, args.max_p95_ms, args.min_availability, args.max_error_rate
        )
        self.stop = asyncio.Event()
        self.breaches: list[str] = []  # every breach's reasons, as first detected
        self.episodes = 0
        self.in_breach = False
        self.hooks: list[asyncio.subprocess.Process] = []
        self.reported: set[int] = set()  # the hooks (by id: a pid may be reused) whose exit was printed
        self.abandon = asyncio.Event()  # a second Ctrl-C: stop waiting for the hooks
        self._jsonl: TextIO | None = None

    async def run(self) -> int:
        limit = 1 if self.args.once else self.args.count
        if self.args.jsonl:
            self._jsonl = open(self.args.jsonl, "a", encoding="utf-8")  # noqa: SIM115 - whole run
        try:
            # A fresh connection per poll (a new client's): a dead listener cannot hide behind a kept-alive one.
            connector = aiohttp.TCPConnector(force_close=True)
            async with aiohttp.ClientSession(connector=connector) as session:
                await self._loop(session, limit)
            self.stop.set()  # the polls are over (--count, --once): a Ctrl-C now stops waiting for the hooks
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
            result = await self._poll(session, seq)
            self.stats.add(result)
            print(result.line(), file=self.out, flush=True)
            self._record({"type": "poll", "url": self.shown_url, **asdict(result)})
            if self.stats.polls >= self.args.min_polls:
                await self._judge()
            self._report_hooks()

    async def _poll(self, session: aiohttp.ClientSession, seq: int) -> Poll:
        """The health request, then (when the service answered) the WebSocket ping."""
        result = await poll_once(session, self.url, seq, self.args.timeout_s)
        if result.ok and self.ws_url is not None:
            result.ws_ms, problem = await ping_ws(session, self.ws_url, self.args.timeout_s)
            if problem is not None:
                result.ok, result.ai_degraded = False, False
                result.error = problem if result.error is None else f"{result.error}; {problem}"
        return result

    async def _judge(self) -> None:
        """A breach starts when a rule fires and ends when none does: the hook runs once per breach."""
        breaches = self.thresholds.breaches(self.stats)
        if breaches and not self.in_breach:
            self.in_breach = True
            self.episodes += 1
            self.breaches += breaches
            print("BREACH: " + "; ".join(breaches), file=self.out, flush=True)
            self._record({"type": "breach", "url": self.shown_url, "seq": self.stats.polls, "breaches": breaches})
            await self._start_hook(breaches)
        elif not breaches and self.in_breach:
            self.in_breach = False
            print("RECOVERED: no breach rule fires any more", file=self.out, flush=True)

    async def _start_hook(self, breaches: list[str]) -> None:
        command = self.args.on_breach
        if not command:
            return
        env = dict(os.environ, MONITOR_URL=self.shown_url, MONITOR_BREACH="; ".join(breaches))
        print(f"running --on-breach command: {mask_urls_in(command)}", file=sys.stderr, flush=True)
        try:
            self.hooks.append(
                # Its own session: a Ctrl-C (SIGINT to the terminal's group) never stops a rollback half done.
                await asyncio.create_subprocess_shell(
                    command, stdin=asyncio.subprocess.DEVNULL, env=env, start_new_session=True
                )
            )
        except OSError as exc:
            print(f"error: --on-breach command could not start: {exc}", file=sys.stderr)

    def interrupt(self) -> None:
        """Ctrl-C / SIGTERM: stop at the next poll boundary; a second one stops waiting for the hooks."""
        (self.abandon if self.stop.is_set() else self.stop).set()

    def _report_hooks(self) -> None:
        """Print (and record) the exit of every hook that ended since the last look."""
        for hook in (h for h in self.hooks if h.returncode is not None and id(h) not in self.reported):
            self.reported.add(id(hook))
            seq = self.stats.polls
            print(f"--on-breach command (pid {hook.pid}) exited with {hook.returncode} (seen after poll {seq})",
                  file=sys.stderr, flush=True)
            self._record({"type": "hook", "pid": hook.pid, "exit_code": hook.returncode, "seq": seq})

    async def _wait_hooks(self) -> None:
        """Wait for the hooks still running, unless a second Ctrl-C says to leave them."""
        running = [hook for hook in self.hooks if hook.returncode is None]
        if running and not self.abandon.is_set():
            pids = ", ".join(str(hook.pid) for hook in running)
            print(f"waiting for the --on-breach command (pid {pids}) to finish; Ctrl-C again to leave it running",
                  file=sys.stderr, flush=True)
            ended: asyncio.Future[Any] = asyncio.gather(*(hook.wait() for hook in running))
            abandoned: asyncio.Future[Any] = asyncio.ensure_future(self.abandon.wait())
            await asyncio.wait([ended, abandoned], return_when=asyncio.FIRST_COMPLETED)
            for future in (ended, abandoned):
                future.cancel()
            await asyncio.gather(ended, abandoned, return_exceptions=True)
        self._report_hooks()
        for hook in (h for h in self.hooks if h.returncode is None):
            print(f"--on-breach command (pid {hook.pid}) left running (second Ctrl-C)", file=sys.stderr, flush=True)

    async def _finish(self) -> int:
        if self.stats.polls:
            # Whatever the number of polls, the end of the run is judged.
            await self._judge()
        await self._wait_hooks()
        self._summary()
        if not self.stats.polls:
            print("result: NO DATA (stopped before the first poll)", file=self.out)
            return EXIT_FAILURE
        if self.breaches:
            print(f"result: BREACH ({self.episodes} breach(es))", file=self.out)
            return EXIT_FAILURE
        if self.stats.consecutive_failures:
            # Not a breach (no hook ran), but a run that ends failing (--once, say) is not OK.
            print("result: FAILING (the last poll failed; too few in a row for a breach)", file=self.out)
            return EXIT_FAILURE
        print("result: OK", file=self.out)
        return EXIT_OK

    def _summary(self) -> None:
        stats = self.stats
        figures = stats.figures()
        current = self.thresholds.breaches(stats) if stats.polls else []
        p50, p95, worst, ws50, ws95 = (figures[k] for k in ("p50_ms", "p95_ms", "max_ms", "ws_p50_ms", "ws_p95_ms"))

        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f} ms"

        limits = self.thresholds
        slo = "missed" if stats.polls and limits.slo_missed(stats) else "met"
        lines = [
            f"summary: {self.shown_url}",
            f"  polls {stats.polls}, ok {stats.ok}, failed {stats.polls - stats.ok}: availability "
            f"{stats.availability:.3f} % / error rate {stats.error_rate:.3f} % (one count; SLO >= "
            f"{limits.min_availability:g} % / <= {limits.max_error_rate:g} %: {slo})",
            f"  AI provider degraded in {stats.ai_degraded} poll(s) (reported, not an outage)",
            f"  latency p50 {ms(p50)}, p95 {ms(p95)} (max allowed {limits.max_p95_ms:g} ms),"
            f" slowest {ms(worst)}",
            f"  WebSocket ping p50 {ms(ws50)}, p95 {ms(ws95)}"
            + (" (not measured: --no-ws)" if self.ws_url is None else ""),
            f"  consecutive failures {stats.consecutive_failures}"
            f" (longest run {stats.longest_failure_run}); a breach at {limits.fail_after} in a row",
        ]
        lines += [f"  breach: {text}" for text in self.breaches]
        print("\n".join(lines), file=self.out, flush=True)
        self._record(
            {
                "type": "summary",
                "url": self.shown_url,
                **figures,
                "breaches": self.breaches,
                "breach_count": self.episodes,
                "breached_at_end": current,
                "slo_met": slo == "met",
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
            "Poll {URL}/health and ping {URL}/ws; report availability (= 100 - error rate, one "
            "count), p50/p95 latency of both, consecutive failures and polls where only the AI "
            "provider was degraded: a line per poll and a summary at the end (after --once, "
            "--count polls, or Ctrl-C). A poll is ok when the answer is 200 with "
            '{"status": "ok"} (or a 503 failing only the "ai" check: reported, not an outage) '
            "and the WebSocket ping is answered."
        ),
        epilog=(
            "A breach: --fail-after consecutive failed polls, more than --window-max-error-rate "
            "of the last --window polls failed, or a p95 (over the window, 20 samples at least) "
            "above --max-p95-ms; never one blip. Exit codes: 0 no breach; 1 a breach (or no poll "
            "made); 2 bad command line. --on-breach runs once per breach, through the shell, "
            "with MONITOR_URL and MONITOR_BREACH in its environment, in a session of its own "
            "(a Ctrl-C on the monitor does not reach it); its exit is printed at the next poll. "
            "Ctrl-C while it runs waits for it; a second Ctrl-C leaves it running."
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
    parser.add_argument("--no-ws", action="store_true", help="do not ping the WebSocket endpoint")
    parser.add_argument("--ws-url", metavar="URL", help="the WebSocket endpoint (default: ws(s)://HOST/ws of --url)")
    _add_threshold_options(parser)
    _add_breach_options(parser)
    return parser


def _add_breach_options(parser: argparse.ArgumentParser) -> None:
    """--fail-after, --window, --window-max-error-rate."""
    parser.add_argument(
        "--fail-after",
        type=positive_int,
        default=DEFAULT_FAIL_AFTER,
        metavar="N",
        help=f"breach after N consecutive failed polls (default {DEFAULT_FAIL_AFTER})",
    )
    parser.add_argument(
        "--window",
        type=positive_int,
        default=DEFAULT_WINDOW,
        metavar="N",
        help=f"sliding window, in polls, for the failure rate and the p95 figures (default {DEFAULT_WINDOW})",
    )
    parser.add_argument(
        "--window-max-error-rate",
        type=percent,
        default=DEFAULT_WINDOW_MAX_ERROR_RATE,
        metavar="PCT",
        help="breach when more than PCT percent of the last --window polls failed, judged once the "
        f"window is full (default {DEFAULT_WINDOW_MAX_ERROR_RATE:g})",
    )


def _add_threshold_options(parser: argparse.ArgumentParser) -> None:
    """The thresholds, --min-polls, --on-breach and --jsonl."""
    parser.add_argument(
        "--min-availability",
        type=percent,
        default=DEFAULT_MIN_AVAILABILITY,
        metavar="PCT",
        help="the SLO's availability over the whole run, percent: reported in the summary "
        f"(default {DEFAULT_MIN_AVAILABILITY:g})",
    )
    parser.add_argument(
        "--max-p95-ms",
        type=non_negative_float,
        default=DEFAULT_MAX_P95_MS,
        metavar="MS",
        help=f"breach above this p95 latency, /health or WebSocket ping (default {DEFAULT_MAX_P95_MS:g})",
    )
    parser.add_argument(
        "--max-error-rate",
        type=percent,
        default=DEFAULT_MAX_ERROR_RATE,
        metavar="PCT",
        help="the SLO's error rate over the whole run, percent (100 - availability: the same "
        f"count): reported in the summary (default {DEFAULT_MAX_ERROR_RATE:g})",
    )
    parser.add_argument(
        "--min-polls",
        type=positive_int,
        default=DEFAULT_MIN_POLLS,
        metavar="N",
        help="judge the breach rules only once N polls were made "
        f"(default {DEFAULT_MIN_POLLS}); the end of a run is always judged",
    )
    parser.add_argument(
        "--on-breach",
        metavar="COMMAND",
        help="shell command to run once per breach, when it is detected",
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
        # Ctrl-C or SIGTERM ends the run at the next poll boundary and still prints the summary,
        # after the --on-breach commands still running (a second one leaves them running).
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, monitor.interrupt)
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
