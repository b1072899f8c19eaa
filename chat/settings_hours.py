"""How the business-hours settings are read (BUSINESS_HOURS, BUSINESS_TZ, HOLIDAYS): the readers of
states/business_hours.py, whose HoursError becomes the setting's SettingsError."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chat.settings_parse import Parser, SettingsError
from states.business_hours import HoursError, parse_holidays, parse_hours, parse_zone


def _hours_parser(read: Callable[[str], Any]) -> Callable[[str, str], Any]:
    """A states.business_hours reader whose HoursError becomes the setting's SettingsError."""

    def parse(variable: str, text: str) -> Any:
        try:
            return read(text)
        except HoursError as exc:
            raise SettingsError(variable, str(exc)) from None

    return parse


HOURS = Parser(_hours_parser(parse_hours), "`;`-separated `Days HH:MM-HH:MM[,HH:MM-HH:MM]`, days like `Mon-Fri` "
                                            "or `Sat,Sun`; a range never crosses midnight")
ZONE = Parser(_hours_parser(parse_zone), "an IANA time zone name")
HOLIDAY_DATES = Parser(_hours_parser(parse_holidays), "`,`-separated `YYYY-MM-DD` dates")
