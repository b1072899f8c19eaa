"""Business hours: parsing with clear errors, open/closed, the next opening and business-time sums."""

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from chat.conversations.hours import OfficeHours
from chat.settings import Settings, SettingsError
from states.business_hours import BusinessHours, HoursError, parse_holidays, parse_hours, parse_zone

SH = ZoneInfo("Asia/Shanghai")


def ms(*args: int, tz=SH) -> int:
    return int(datetime(*args, tzinfo=tz).timestamp() * 1000)


HOURS = BusinessHours(parse_hours("Mon-Fri 09:00-18:00; Sat 10:00-16:00"), "Asia/Shanghai",
                      frozenset({date(2026, 10, 1)}))  # a Thursday


def test_parse_reads_days_ranges_and_lists():
    weekly = parse_hours("Mon,Wed 08:00-12:00,13:00-17:30; Sun 00:00-24:00")
    assert weekly.days[0] == ((480, 720), (780, 1050))
    assert weekly.days[1] == ()
    assert weekly.days[6] == ((0, 1440),)


@pytest.mark.parametrize(("text", "words"), [
    ("Mon-Fri 9-18", "is not a range like 09:00-18:00"),
    ("Mon-Fri", "needs days and hours"),
    ("Fri-Mon 09:00-18:00", "runs backwards"),
    ("Moonday 09:00-18:00", "unknown day 'Moonday'"),
    ("Mon 18:00-09:00", "never crosses midnight"),
    ("Mon 25:00-26:00", "not a time between 00:00 and 24:00"),
    ("  ;  ", "no open hours"),
])
def test_bad_hours_say_what_is_wrong(text, words):
    with pytest.raises(HoursError, match=words):
        parse_hours(text)


def test_settings_name_the_variable_and_nothing_else_changes():
    with pytest.raises(SettingsError, match="^BUSINESS_HOURS: 'x9' in 'Mon x9'"):
        Settings.from_env({"BUSINESS_HOURS": "Mon x9"})
    with pytest.raises(SettingsError, match="^BUSINESS_TZ: unknown time zone 'Mars/Base'"):
        Settings.from_env({"BUSINESS_TZ": "Mars/Base"})
    with pytest.raises(SettingsError, match="^HOLIDAYS: '2026-13-01' is not a date"):
        Settings.from_env({"HOLIDAYS": "2026-10-01, 2026-13-01"})
    assert parse_zone(" Europe/Berlin ") == "Europe/Berlin"
    assert parse_holidays("2026-10-02,2026-10-01,,2026-10-01") == (date(2026, 10, 1), date(2026, 10, 2))


def test_unset_is_always_open():
    hours = OfficeHours.of(Settings.from_env({})).hours
    assert hours.always_open and hours.is_open(0)
    assert hours.next_open_ms(123) == 123 and hours.add_ms(1000, 500) == 1500


def test_open_and_closed_in_the_business_zone():
    assert HOURS.is_open(ms(2026, 9, 28, 9, 0))  # Monday 09:00 Shanghai
    assert not HOURS.is_open(ms(2026, 9, 28, 8, 59))
    assert not HOURS.is_open(ms(2026, 9, 28, 18, 0))  # the end is exclusive
    assert HOURS.is_open(ms(2026, 10, 3, 15, 59))  # Saturday
    assert not HOURS.is_open(ms(2026, 10, 4, 12, 0))  # Sunday
    assert not HOURS.is_open(ms(2026, 10, 1, 12, 0))  # the holiday
    assert HOURS.is_open(ms(2026, 9, 28, 1, 0, tz=UTC))  # 09:00 in Shanghai is 01:00 UTC


def test_next_opening_skips_nights_weekends_and_holidays():
    assert HOURS.next_open_ms(ms(2026, 9, 28, 10, 0)) == ms(2026, 9, 28, 10, 0)  # open now
    assert HOURS.next_open_ms(ms(2026, 9, 28, 19, 0)) == ms(2026, 9, 29, 9, 0)
    assert HOURS.next_open_ms(ms(2026, 9, 30, 18, 30)) == ms(2026, 10, 2, 9, 0)  # Thursday is the holiday
    assert HOURS.next_open_ms(ms(2026, 10, 3, 16, 0)) == ms(2026, 10, 5, 9, 0)  # Saturday evening -> Monday


def test_business_time_stops_while_closed():
    assert HOURS.add_ms(ms(2026, 9, 28, 10, 0), 120_000) == ms(2026, 9, 28, 10, 2)
    assert HOURS.add_ms(ms(2026, 9, 28, 17, 59), 120_000) == ms(2026, 9, 29, 9, 1)  # one minute today, one tomorrow
    assert HOURS.add_ms(ms(2026, 9, 28, 22, 0), 120_000) == ms(2026, 9, 29, 9, 2)  # starts counting at the opening
    assert HOURS.add_ms(ms(2026, 10, 3, 15, 0), 2 * 3600_000) == ms(2026, 10, 5, 10, 0)


def test_a_notice_names_the_moment_in_both_languages():
    zh, en = HOURS.local_text(ms(2026, 10, 5, 9, 0))
    assert zh == "10月5日（周一）09:00"
    assert en == "Mon Oct 5, 09:00 (Asia/Shanghai)"


def test_a_range_to_midnight_is_open_until_the_next_day():
    hours = BusinessHours(parse_hours("Fri 22:00-24:00; Sat 00:00-02:00"), "UTC")
    assert hours.is_open(ms(2026, 10, 2, 23, 59, tz=UTC)) and hours.is_open(ms(2026, 10, 3, 1, 0, tz=UTC))
    assert hours.add_ms(ms(2026, 10, 2, 23, 0, tz=UTC), 2 * 3600_000) == ms(2026, 10, 3, 1, 0, tz=UTC)
