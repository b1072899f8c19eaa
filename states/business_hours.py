"""Business hours (PROTOCOL 4.1): when agents are expected, in one time zone, minus holidays.

`BUSINESS_HOURS` reads like `Mon-Fri 09:00-18:00; Sat 10:00-16:00`: `;`-separated entries, each a
day list (`Mon`, `Mon-Fri`, `Mon,Wed,Fri`, or a mix) and one or more `HH:MM-HH:MM` ranges
(`,`-separated; `24:00` may end one). A range never crosses midnight: write `Fri 22:00-24:00;
Sat 00:00-02:00` for a night shift. Unset means always open. Times are epoch milliseconds
everywhere else; only this module knows the zone. No aiohttp here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_NAMES_ZH = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")
SEARCH_DAYS = 400  # a year and a bit: past every holiday list that still leaves one open day
_RANGE = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


class HoursError(ValueError):
    """A business-hours, time-zone or holiday value that cannot be read; the message says why."""


Minutes = tuple[int, int]  # [start, end) in minutes after local midnight


@dataclass(frozen=True)
class WeeklyHours:
    """The open ranges of each weekday (index 0 = Monday), minutes after local midnight."""

    days: tuple[tuple[Minutes, ...], ...]
    text: str = ""

    def describe(self) -> str:
        """The text it was read from."""
        return self.text


def _minutes(hour: str, minute: str, text: str) -> int:
    h, m = int(hour), int(minute)
    if m > 59 or h > 24 or (h == 24 and m):
        raise HoursError(f"{text!r} is not a time between 00:00 and 24:00")
    return h * 60 + m


def _day_index(name: str, entry: str) -> int:
    key = name.strip().lower()[:3]
    if key not in DAYS or len(name.strip()) < 3:
        raise HoursError(f"unknown day {name.strip()!r} in {entry!r}; use Mon, Tue, Wed, Thu, Fri, Sat, Sun")
    return DAYS.index(key)


def _day_list(spec: str, entry: str) -> list[int]:
    out: list[int] = []
    for part in spec.split(","):
        if not part.strip():
            raise HoursError(f"empty day in {entry!r}")
        if "-" in part:
            first, _, last = part.partition("-")
            a, b = _day_index(first, entry), _day_index(last, entry)
            if b < a:
                raise HoursError(f"day range {part.strip()!r} runs backwards (write Sat-Sun, not Sun-Sat)")
            out += range(a, b + 1)
        else:
            out.append(_day_index(part, entry))
    return out


def _ranges(spec: str, entry: str) -> list[Minutes]:
    out: list[Minutes] = []
    for part in spec.split(","):
        match = _RANGE.match(part.strip())
        if match is None:
            raise HoursError(f"{part.strip()!r} in {entry!r} is not a range like 09:00-18:00")
        start = _minutes(match.group(1), match.group(2), part)
        end = _minutes(match.group(3), match.group(4), part)
        if end <= start:
            raise HoursError(f"{part.strip()!r} ends before it starts (a range never crosses midnight)")
        out.append((start, end))
    return out


def parse_hours(text: str) -> WeeklyHours:
    """`Mon-Fri 09:00-18:00; Sat 10:00-16:00` -> WeeklyHours; HoursError naming the bad part."""
    days: list[list[Minutes]] = [[] for _ in DAYS]
    for raw in text.split(";"):
        entry = raw.strip()
        if not entry:
            continue
        day_spec, _, range_spec = entry.partition(" ")
        if not range_spec.strip():
            raise HoursError(f"{entry!r} needs days and hours, like 'Mon-Fri 09:00-18:00'")
        for day in _day_list(day_spec, entry):
            days[day] += _ranges(range_spec.replace(" ", ""), entry)
    merged = tuple(_merge(ranges) for ranges in days)
    if not any(merged):
        raise HoursError("names no open hours at all (unset it to be always open)")
    return WeeklyHours(merged, text.strip())


def _merge(ranges: list[Minutes]) -> tuple[Minutes, ...]:
    out: list[Minutes] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return tuple(out)


def parse_zone(text: str) -> str:
    """An IANA zone name (`Asia/Shanghai`); HoursError when the system has no such zone."""
    name = text.strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise HoursError(f"unknown time zone {name!r} (an IANA name such as Asia/Shanghai)") from None
    return name


def parse_holidays(text: str) -> tuple[date, ...]:
    """`2026-10-01,2026-10-02` -> dates; HoursError naming the bad one."""
    out = []
    for part in text.split(","):
        if not part.strip():
            continue
        try:
            out.append(date.fromisoformat(part.strip()))
        except ValueError:
            raise HoursError(f"{part.strip()!r} is not a date like 2026-10-01") from None
    return tuple(sorted(set(out)))


@dataclass(frozen=True)
class BusinessHours:
    """Open or closed at a moment, the next opening, and business-time arithmetic.

    `weekly` None means always open: every question then has the trivial answer."""

    weekly: WeeklyHours | None = None
    zone: str = "Asia/Shanghai"
    holidays: frozenset[date] = field(default_factory=frozenset)

    @property
    def always_open(self) -> bool:
        """No business hours configured."""
        return self.weekly is None

    def _tz(self) -> ZoneInfo:
        return ZoneInfo(self.zone)

    def _walk(self, from_ms: int) -> Iterator[tuple[int, int]]:
        """The open intervals [start_ms, end_ms) that end after `from_ms`, clipped to start no earlier
        than it, in order, for SEARCH_DAYS local days (lazily: most questions need the first one)."""
        assert self.weekly is not None
        tz = self._tz()
        day = datetime.fromtimestamp(from_ms / 1000, tz).date() - timedelta(days=1)  # a range may end past midnight
        for offset in range(SEARCH_DAYS):
            current = day + timedelta(days=offset)
            if current in self.holidays:
                continue
            for start, end in self.weekly.days[current.weekday()]:
                start_ms, end_ms = _local_ms(current, start, tz), _local_ms(current, end, tz)
                if end_ms > from_ms:
                    yield max(start_ms, from_ms), end_ms

    def is_open(self, at_ms: int) -> bool:
        """Are agents expected at this moment?"""
        if self.weekly is None:
            return True
        first = next(self._walk(at_ms), None)
        return first is not None and first[0] <= at_ms

    def next_open_ms(self, at_ms: int) -> int:
        """The moment agents are next expected: `at_ms` itself when open now."""
        if self.weekly is None:
            return at_ms
        for start, _end in self._walk(at_ms):
            return start
        raise HoursError(f"no open hours in the {SEARCH_DAYS} days after {at_ms}: too many holidays?")

    def add_ms(self, start_ms: int, duration_ms: int) -> int:
        """The moment `duration_ms` of business time has passed after `start_ms` (time while closed
        does not count): what an SLA's due time is."""
        if self.weekly is None:
            return start_ms + duration_ms
        left = duration_ms
        for start, end in self._walk(start_ms):
            if end - start >= left:
                return start + left
            left -= end - start
        raise HoursError(f"no open hours in the {SEARCH_DAYS} days after {start_ms}: too many holidays?")

    def local_text(self, at_ms: int) -> tuple[str, str]:
        """(Chinese, English) renderings of a moment in the business zone, for notices."""
        moment = datetime.fromtimestamp(at_ms / 1000, self._tz())
        clock = moment.strftime("%H:%M")
        zh = f"{moment.month}月{moment.day}日（{DAY_NAMES_ZH[moment.weekday()]}）{clock}"
        en = f"{moment.strftime('%a')} {moment.strftime('%b')} {moment.day}, {clock} ({self.zone})"
        return zh, en


def _local_ms(day: date, minutes: int, tz: ZoneInfo) -> int:
    """The epoch ms of `minutes` after local midnight of `day` (24:00 is the next midnight)."""
    extra_days, minute_of_day = divmod(minutes, 24 * 60)
    moment = datetime.combine(day + timedelta(days=extra_days), time(minute_of_day // 60, minute_of_day % 60), tz)
    return int(moment.astimezone(UTC).timestamp() * 1000)


__all__ = ["DAYS", "BusinessHours", "HoursError", "WeeklyHours", "parse_holidays", "parse_hours", "parse_zone"]
