"""The URL parsers and value parsers every setting is read with."""

import pytest

from chat.settings import parse_database_url, parse_redis_url
from chat.settings_parse import CHANNEL_PREFIX, SettingsError, choice, integer, number


@pytest.mark.parametrize(
    "url",
    [
        "mysql://chat:p%40ss%3Aw%2Fd@db.example:3307/chat_api",
        "mysql+aiomysql://chat:p%40ss%3Aw%2Fd@db.example:3307/chat_api",
        "mysql+asyncmy://chat:p%40ss%3Aw%2Fd@db.example:3307/chat_api",
    ],
)
def test_mysql_urls_with_percent_encoded_credentials(url):
    cfg = parse_database_url(url)
    assert (cfg.kind, cfg.host, cfg.port, cfg.user, cfg.password, cfg.database) == (
        "mysql",
        "db.example",
        3307,
        "chat",
        "p@ss:w/d",
        "chat_api",
    )
    assert "p@ss" not in cfg.describe() and "p@ss" not in repr(cfg)


def test_sqlite_urls():
    assert parse_database_url("sqlite:///data/chat.db").path == "data/chat.db"
    assert parse_database_url("sqlite:////tmp/chat.db").path == "/tmp/chat.db"


@pytest.mark.parametrize(
    "url, problem",
    [
        ("sqlite:/chat.db", "sqlite URL must look like sqlite:///path/to/chat.db"),
        ("sqlite:///", "sqlite URL needs a path, e.g. sqlite:///data/chat.db"),
        ("mysql:///db", "missing host, e.g. mysql://user:pass@host:3306/db"),
        ("mysql://h/a/b", "missing database name, e.g. mysql://user:pass@host:3306/db"),
    ],
)
def test_bad_database_urls_say_what_is_wrong(url, problem):
    with pytest.raises(SettingsError) as err:
        parse_database_url(url, "X_URL")
    assert (err.value.variable, err.value.problem) == ("X_URL", problem)


def test_redis_urls():
    cfg = parse_redis_url(" redis://:pw@cache:6390/3 ")
    assert (cfg.url, cfg.host, cfg.port, cfg.db, cfg.describe()) == (
        "redis://:pw@cache:6390/3", "cache", 6390, 3, "redis://cache:6390/3"
    )
    assert "pw" not in repr(cfg)
    assert parse_redis_url("unix:///run/redis.sock").db == 0
    with pytest.raises(SettingsError, match="missing host"):
        parse_redis_url("redis:///0")


def test_value_parsers_name_the_variable_and_state_their_check():
    assert (integer(1).read("N", "7"), number(0.5).read("S", "0.5")) == (7, 0.5)
    assert (integer(1).check, number(0.001).check, choice("a", "b").check) == ("integer ≥ 1", "number ≥ 0.001",
                                                                              "one of `a`, `b`")
    with pytest.raises(SettingsError, match=r"^N: must be an integer, got '1.5'$"):
        integer(1).read("N", "1.5")
    with pytest.raises(SettingsError, match=r"^S: must be >= 1.0, got 0.5$"):
        number(1.0).read("S", "0.5")
    for text in ("nan", "NaN", "inf", "-inf", "Infinity"):  # they parse as floats, and nan passes any bound
        with pytest.raises(SettingsError, match=rf"^S: must be a finite number, got '{text}'$"):
            number(1.0).read("S", text)
    assert CHANNEL_PREFIX.read("B", "chat:prod") == "chat:prod"
    for text in ("chat:{prod}", "a}b", "{"):  # a hash tag would put every conversation's channel in one slot
        with pytest.raises(SettingsError, match=r"^B: must not contain \{ or \}"):
            CHANNEL_PREFIX.read("B", text)
    with pytest.raises(SettingsError, match=r"^C: must be one of a, b, got 'c'$"):
        choice("a", "b").read("C", " C ")
    assert choice("info", upper=True).read("L", "Info") == "INFO"
