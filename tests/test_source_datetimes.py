"""DATETIME values read from MySQL/MariaDB: the bridge's parsers (the export's and verify's,
``dialects.DATETIME_PARSERS``) give exactly what MySQLdb's own gives, for every text the
server can send and for any other text too (zero dates, impossible dates, stray bytes)."""
import contextlib
import datetime as dt
from types import SimpleNamespace

import MySQLdb
import pytest
from hypothesis import given, settings, strategies as st
from MySQLdb.constants import FIELD_TYPE
from MySQLdb.times import DateTime_or_None

from migration_bridge.dialects import DATETIME_PARSERS, checked_datetime_parser, use_fast_datetimes

from .conftest import require_server

PARSERS = [make(DateTime_or_None) for make in DATETIME_PARSERS.values()]


def same(value) -> None:
    expected = DateTime_or_None(value)
    for parse in PARSERS:
        got = parse(value)
        assert got == expected and type(got) is type(expected), (value, parse)


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
                                  b"+024-05-01 12:03:04", b"9999-12-31 23:59:59.999999", b"2024-05-01T12:03:04",
                                  b"20240501T120304.123+01", b"2024-05-01 12:03:04.500", b"0099-01-01 00:00:00",
                                  "2024-05-01 12:03:04.123456", b"2024-05-01 12:03:04.000000"])
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
    for make in (None, *DATETIME_PARSERS.values()):
        conn = MySQLdb.connect(host="127.0.0.1", port=3306, user="root", charset="utf8mb4")
        try:
            if make is not None:
                use_fast_datetimes(conn.converter, make)
            cur = conn.cursor()
            cur.execute(query)
            rows.append(cur.fetchone())
        finally:
            conn.close()
    assert rows[0] == rows[1] == rows[2] == (dt.datetime(2024, 5, 1, 12, 3, 4, 500000), dt.datetime(2024, 5, 1, 12, 3, 4),
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


@pytest.mark.parametrize("datetimes", ["fast", "checked"])
def test_the_export_and_verify_each_read_with_their_own_parser(datetimes):
    """verify_flask reads with a parser of its own: its proof does not rest on the export's."""
    from migration_bridge.source import LegacySource

    source = LegacySource("video_app", datetimes=datetimes)
    connection = _FakeMySQLConnection()
    source._on_connect(sender=None, connection=connection)
    parser = connection.connection.converter[FIELD_TYPE.DATETIME]
    assert parser.__name__ == {"fast": "mysql_datetime", "checked": "checked_datetime"}[datetimes]
    LegacySource("video_app")  # the export's again, for the tests after this one


def test_verify_flask_asks_for_its_checked_parser(monkeypatch):
    import migration_bridge.verify as verify
    from migration_bridge import cli

    made = []
    monkeypatch.setattr(verify, "LegacySource", lambda label, **kwargs: made.append(kwargs) or 1 / 0)
    with pytest.raises(ZeroDivisionError):
        verify.run_verify(SimpleNamespace(lock_timeout=cli.current.get("lock_timeout")),
                          SimpleNamespace(LEGACY_APP="video_app"))
    assert made == [{"datetimes": "checked"}]


def test_the_checked_parser_takes_no_value_that_does_not_write_back_as_its_text(monkeypatch):
    """A fromisoformat that misread a text could not pass a wrong value through verify's
    parser: the value it made does not write back as the text, and the driver answers."""
    from migration_bridge import dialects

    misreading = SimpleNamespace(fromisoformat=lambda text: dt.datetime.fromisoformat(text) + dt.timedelta(seconds=1))
    monkeypatch.setattr(dialects, "dt", SimpleNamespace(datetime=misreading))
    parse = checked_datetime_parser(DateTime_or_None)
    for text in ("2024-05-01 12:03:04", "1999-12-31 23:59:59.123", b"2038-01-19 03:14:07.000001"):
        assert parse(text) == DateTime_or_None(text)
    assert parse("2024-05-01 12:03:04.5") == dt.datetime(2024, 5, 1, 12, 3, 4, 500000)  # the driver's: one digit
