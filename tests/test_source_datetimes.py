"""DATETIME values read from MySQL/MariaDB: the bridge's parser (``dialects.use_fast_datetimes``)
gives exactly what MySQLdb's own gives, for every text the server can send and for any
other text too (zero dates, impossible dates, stray bytes)."""
import contextlib
import datetime as dt
from types import SimpleNamespace

import MySQLdb
import pytest
from hypothesis import given, settings, strategies as st
from MySQLdb.constants import FIELD_TYPE
from MySQLdb.times import DateTime_or_None

from migration_bridge.dialects import mysql_datetime_parser, use_fast_datetimes

from .conftest import require_server

parse = mysql_datetime_parser(DateTime_or_None)


def same(value) -> None:
    expected, got = DateTime_or_None(value), parse(value)
    assert got == expected and type(got) is type(expected), value


def digits(n: int):
    return st.text("0123456789", min_size=n, max_size=n)


mysql_shaped = st.builds(
    lambda y, mo, d, h, mi, s, frac: f"{y}-{mo}-{d} {h}:{mi}:{s}{frac}".encode(),
    digits(4), digits(2), digits(2), digits(2), digits(2), digits(2),
    st.one_of(st.just(""), st.integers(1, 7).flatmap(lambda n: digits(n).map(lambda f: "." + f))))


@settings(max_examples=3000, deadline=None)
@given(mysql_shaped)
def test_every_text_in_mysqls_form_parses_as_mysqldb_parses_it(value):
    same(value)
    same(value.decode())


@settings(max_examples=2000, deadline=None)
@given(st.one_of(st.binary(max_size=30), st.text(max_size=30), mysql_shaped.flatmap(
    lambda v: st.integers(0, len(v) - 1).flatmap(lambda k: st.binary(min_size=1, max_size=1).map(
        lambda b: v[:k] + b + v[k + 1:])))))
def test_any_other_text_gets_mysqldbs_answer(value):
    same(value)


@pytest.mark.parametrize("text", [b"0000-00-00 00:00:00", b"2024-02-30 10:00:00", b"2024-05-01 24:00:00",
                                  b"2024-05-01", b"2024-05-01 12:03:04.1234567", b"2024-05-01 12:03:04+01:00",
                                  b"+024-05-01 12:03:04", b"9999-12-31 23:59:59.999999"])
def test_the_odd_ones(text):
    same(text)


def test_a_projects_own_parser_is_kept():
    mine = lambda value: "mine"  # noqa: E731
    converter = {FIELD_TYPE.DATETIME: mine, FIELD_TYPE.TIMESTAMP: DateTime_or_None}
    use_fast_datetimes(converter)
    assert converter[FIELD_TYPE.DATETIME] is mine
    assert converter[FIELD_TYPE.TIMESTAMP] is not DateTime_or_None


def test_mariadb_sends_what_both_parsers_agree_on():
    require_server("mariadb")
    query = ("SELECT CAST('2024-05-01 12:03:04.5' AS DATETIME(6)), CAST('2024-05-01 12:03:04' AS DATETIME), "
             "CAST('1999-12-31 23:59:59.123' AS DATETIME(3)), TIMESTAMP('2038-01-19 03:14:07'), "
             "CAST(NULL AS DATETIME)")
    rows = []
    for fast in (False, True):
        conn = MySQLdb.connect(host="127.0.0.1", port=3306, user="root", charset="utf8mb4")
        try:
            if fast:
                use_fast_datetimes(conn.converter)
            cur = conn.cursor()
            cur.execute(query)
            rows.append(cur.fetchone())
        finally:
            conn.close()
    assert rows[0] == rows[1] == (dt.datetime(2024, 5, 1, 12, 3, 4, 500000), dt.datetime(2024, 5, 1, 12, 3, 4),
                                  dt.datetime(1999, 12, 31, 23, 59, 59, 123000), dt.datetime(2038, 1, 19, 3, 14, 7), None)


class _FakeMySQLConnection:
    """What the connect hook touches of a Django MySQL connection."""

    class _Driver:
        def __init__(self):
            self.converter = {FIELD_TYPE.DATETIME: DateTime_or_None, FIELD_TYPE.TIMESTAMP: DateTime_or_None}

        def set_character_set(self, charset):
            pass

        def cursor(self):
            return contextlib.nullcontext(SimpleNamespace(execute=lambda sql: None))

    alias, vendor = "default", "mysql"

    def __init__(self):
        self.connection = self._Driver()


@pytest.mark.parametrize("fast", [True, False])
def test_the_export_parses_fast_and_verify_with_the_drivers_parser(fast):
    """verify_flask reads with MySQLdb's own parser: its proof does not rest on the export's."""
    from migration_bridge.source import LegacySource

    source = LegacySource("video_app", fast_datetimes=fast)
    connection = _FakeMySQLConnection()
    source._on_connect(sender=None, connection=connection)
    assert (connection.connection.converter[FIELD_TYPE.DATETIME] is DateTime_or_None) is not fast
    LegacySource("video_app")  # the export's again, for the tests after this one


def test_verify_flask_asks_for_the_drivers_parser(monkeypatch):
    import migration_bridge.verify as verify
    from migration_bridge import cli

    made = []
    monkeypatch.setattr(verify, "LegacySource", lambda label, **kwargs: made.append(kwargs) or 1 / 0)
    with pytest.raises(ZeroDivisionError):
        verify.run_verify(SimpleNamespace(lock_timeout=cli.current.get("lock_timeout")),
                          SimpleNamespace(LEGACY_APP="video_app"))
    assert made == [{"fast_datetimes": False}]
