"""DATETIME values read from MySQL/MariaDB: the bridge's parsers (the export's and verify's,
``dialects.DATETIME_PARSERS``) give exactly what MySQLdb's own gives, for every text the
server can send and for any other text too (zero dates, impossible dates, stray bytes)."""
import contextlib
import datetime as dt
import json
import random
from types import SimpleNamespace

import MySQLdb
import pytest
from hypothesis import given, settings, strategies as st
from MySQLdb.constants import FIELD_TYPE
from MySQLdb.times import DateTime_or_None
from django.utils import timezone

from migration_bridge.dialects import DATETIME_PARSERS, checked_datetime_parser, use_fast_datetimes

from .conftest import require_server, run_manage, seed_legacy

PARSERS = [make(DateTime_or_None) for make in DATETIME_PARSERS.values()]
# with USE_TZ and the database in UTC: aware values, as Django's make_aware makes them
UTC_PARSERS = [make(DateTime_or_None, utc=True) for make in DATETIME_PARSERS.values()]


def same(value) -> None:
    expected = DateTime_or_None(value)
    for parse in PARSERS:
        got = parse(value)
        assert got == expected and type(got) is type(expected) and getattr(got, "tzinfo", None) is None, (value, parse)
    if type(expected) is dt.datetime:
        expected = timezone.make_aware(expected, dt.timezone.utc)
    for parse in UTC_PARSERS:
        got = parse(value)
        assert got == expected and type(got) is type(expected), (value, parse)
        assert getattr(got, "tzinfo", None) is getattr(expected, "tzinfo", None), (value, parse)


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


def test_aware_values_come_from_both_kinds_or_from_neither():
    """A project's own parser for one kind gives naive values: then neither kind is read
    aware, and Django's make_aware stays."""
    mine = lambda value: "mine"  # noqa: E731
    converter = {FIELD_TYPE.DATETIME: DateTime_or_None, FIELD_TYPE.TIMESTAMP: mine}
    assert use_fast_datetimes(converter, utc=True) is False
    assert converter[FIELD_TYPE.DATETIME]("2024-05-01 12:03:04").tzinfo is None
    converter = {FIELD_TYPE.DATETIME: DateTime_or_None, FIELD_TYPE.TIMESTAMP: DateTime_or_None}
    assert use_fast_datetimes(converter, utc=True) is True
    assert use_fast_datetimes(converter, utc=True) is True  # prepared again: as it was
    assert converter[FIELD_TYPE.TIMESTAMP]("2024-05-01 12:03:04").tzinfo is dt.timezone.utc


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

    class _Operations:
        def get_db_converters(self, expression):
            return [self.convert_datetimefield_value]

        def convert_datetimefield_value(self, value, expression, connection):
            return timezone.make_aware(value, dt.timezone.utc)

    alias, vendor, timezone = "default", "mysql", dt.timezone.utc

    def __init__(self):
        self.connection = self._Driver()
        self.ops = self._Operations()


@pytest.mark.parametrize("datetimes", ["fast", "checked"])
def test_the_export_and_verify_each_read_with_their_own_parser(datetimes):
    """verify_flask reads with a parser of its own: its proof does not rest on the export's."""
    from migration_bridge.source import LegacySource

    source = LegacySource("video_app", datetimes=datetimes)
    connection = _FakeMySQLConnection()
    source._on_connect(sender=None, connection=connection)
    parser = connection.connection.converter[FIELD_TYPE.DATETIME]
    assert parser.__name__ == {"fast": "mysql_datetime_utc", "checked": "checked_datetime"}[datetimes]
    assert connection.ops.get_db_converters(None) == []  # the values come aware: no make_aware
    source._on_connect(sender=None, connection=connection)  # prepared again (check_reachable)
    assert connection.connection.converter[FIELD_TYPE.DATETIME] is parser
    assert connection.ops.get_db_converters(None) == []
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
    parse_utc = checked_datetime_parser(DateTime_or_None, utc=True)
    for text in ("2024-05-01 12:03:04", "1999-12-31 23:59:59.123", b"2038-01-19 03:14:07.000001"):
        assert parse(text) == DateTime_or_None(text)
        assert parse_utc(text) == DateTime_or_None(text).replace(tzinfo=dt.timezone.utc)
    assert parse("2024-05-01 12:03:04.5") == dt.datetime(2024, 5, 1, 12, 3, 4, 500000)  # the driver's: one digit


def test_the_checked_parser_gives_the_drivers_value_made_aware_in_utc():
    """Checked naive, made aware by arithmetic: the same instant and fields as the driver's
    value with UTC attached, over the whole range of years and every fraction width."""
    rng = random.Random(7)
    parse, parse_utc = checked_datetime_parser(DateTime_or_None), checked_datetime_parser(DateTime_or_None, utc=True)
    values = [dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999999), dt.datetime(1970, 1, 1),
              dt.datetime(1969, 12, 31, 23, 59, 59, 999999), dt.datetime(2024, 2, 29, 0, 0, 0, 1)]
    values += [dt.datetime(1, 1, 1) + dt.timedelta(microseconds=rng.randrange(315537897600 * 10**6))
               for _ in range(3000)]
    for value in values:
        for spec in ("seconds", "milliseconds", "microseconds"):
            text = value.isoformat(" ", spec)
            expected = DateTime_or_None(text)
            got, got_utc = parse(text), parse_utc(text.encode())
            assert got == expected and got.tzinfo is None, text
            assert got_utc == expected.replace(tzinfo=dt.timezone.utc) and got_utc.tzinfo is dt.timezone.utc, text
            assert got_utc.timetuple()[:6] == expected.timetuple()[:6] and got_utc.microsecond == expected.microsecond


# Read through the ORM as Django reads them, then through connections the bridge prepared:
# the same values, the same tzinfo, under three settings (USE_TZ in UTC, USE_TZ with the
# database in another zone, no USE_TZ); only the first skips Django's make_aware.
ORM_DATETIMES = """
import json
from django.conf import settings
from django.db import connection, connections
from migration_bridge.source import LegacySource
from django.apps import apps
Comment = apps.get_model("video_app", "Comment")

def configure(case):
    settings.USE_TZ = case != "naive"
    connection.settings_dict["TIME_ZONE"] = "America/Chicago" if case == "zone" else None
    connections.close_all()
    for cached in ("timezone", "timezone_name"):
        connections["default"].__dict__.pop(cached, None)

def read():
    rows = list(Comment.objects.order_by("pk").values_list("id", "created_at", "updated_at")[:300])
    rows += [tuple(r.values()) for r in Comment.objects.order_by("-pk").values("id", "created_at")[:50]]
    rows += [(c.id, c.created_at) for c in Comment.objects.order_by("pk")[:20]]
    return repr(rows)

cases = ("utc", "zone", "naive")
django_reads = {}
for case in cases:
    configure(case)
    django_reads[case] = read()
source = LegacySource("video_app", datetimes=%r)
out = {}
for case in cases:
    configure(case)
    got = read()
    out[case] = {"same": got == django_reads[case], "skipped": "get_db_converters" in connection.ops.__dict__,
                 "rows": got.count("datetime.datetime("), "utc": got.count("tzinfo=datetime.timezone.utc")}
print(json.dumps(out))
"""


@pytest.mark.parametrize("datetimes", ["fast", "checked"])
def test_datetimes_read_aware_are_the_values_django_makes(seeded, datetimes):
    """With USE_TZ and the database in UTC, the bridge's parsers read DATETIMEs aware and
    Django's per-value make_aware is left out; the values are Django's, and under any
    other settings Django's own path stays."""
    legacy = seeded("mariadb")
    out = json.loads(run_manage("shell", "-c", ORM_DATETIMES % datetimes, env=legacy.env)
                     .stdout.strip().splitlines()[-1])
    assert all(case["same"] for case in out.values()), out
    assert out["utc"]["skipped"] and not out["zone"]["skipped"] and not out["naive"]["skipped"], out
    assert out["utc"]["rows"] >= 200 and out["utc"]["utc"] == out["utc"]["rows"], out
    assert out["naive"]["utc"] == 0 and out["zone"]["utc"] == 0 and out["zone"]["rows"] == out["utc"]["rows"], out


@pytest.fixture(scope="module")
def seeded(make_module_database):
    def get(kind):
        return seed_legacy(make_module_database, kind, "demo", seed=3)
    return get
