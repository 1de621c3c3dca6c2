"""Row transforms: pure functions, tested without a database."""
import datetime as dt
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

import flask_models as fm
from migration_bridge import transforms as t

UTC = dt.timezone.utc
CTX = t.TransformContext(static_base_url="/static/")


# --- URLs and paths ------------------------------------------------------------

@pytest.mark.parametrize("path,url", [
    ("video_app/images/avatars/avatar3.png", "/static/video_app/images/avatars/avatar3.png"),
    ("/video_app/images/characters/marvel/ironman.png", "/static/video_app/images/characters/marvel/ironman.png"),
    ("/static/video_app/x.png", "/static/video_app/x.png"),
    ("https://cdn/x.png", "https://cdn/x.png"),
    ("", ""),
    (None, None),
])
def test_static_url(path, url):
    assert t.static_url(path, "/static/") == url


PATHS = st.lists(st.text(alphabet="abcdefghij_-.0123456789", min_size=1, max_size=12), min_size=1, max_size=4)


@given(parts=PATHS, base=st.sampled_from(["/static/", "/static", "https://cdn.example.org/static/"]))
def test_static_url_properties(parts, base):
    path = "/".join(parts)
    url = t.static_url(path, base)
    assert url.endswith(path) and url.startswith(base.rstrip("/") + "/")
    assert "//" not in url.replace("://", "")
    assert t.static_url(url, base) == url  # idempotent: a re-run never prefixes twice


# --- attribution ---------------------------------------------------------------

@pytest.mark.parametrize("students,teacher_id,teacher_match,expected", [
    ([7], 3, False, t.Attribution("student", student_id=7, candidates=1)),
    ([], 3, True, t.Attribution("teacher", teacher_id=3, candidates=1)),
    ([7, 8], 3, False, t.Attribution("ambiguous", candidates=2)),
    ([7], 3, True, t.Attribution("ambiguous", candidates=2)),
    ([], 3, False, t.Attribution("unmatched")),
    ([], None, True, t.Attribution("unmatched")),
])
def test_infer_author(students, teacher_id, teacher_match, expected):
    assert t.infer_author(students, teacher_id, teacher_match) == expected


def _media(**kw):
    row = dict(id=1, session_id=2, title="t", description=None, media_type="image", video_file="",
               image_file="images/a.png", uploaded_at=dt.datetime(2025, 1, 1, tzinfo=UTC), graph_likes=1,
               eye_likes=0, read_likes=0, graph_tag=None, is_graph=False, variable_tag=None,
               submitted_password="12345", student_id=None, posted_by_admin_id=None,
               project_group=uuid.UUID(int=5).hex, project_images=None, is_project=False)
    row.update(kw)
    return row


def test_media_drops_submitted_password_and_applies_attributions():
    for attribution, student_id, admin_id in [
        (t.Attribution("student", student_id=9, candidates=1), 9, None),
        (t.Attribution("teacher", teacher_id=4, candidates=1), None, 4),
        (t.Attribution("ambiguous", candidates=2), None, None),
    ]:
        ctx = t.TransformContext(attributions={1: attribution})
        out = t.transform_media(_media(), ctx)
        assert "submitted_password" not in out.row
        assert (out.row["student_id"], out.row["posted_by_admin_id"]) == (student_id, admin_id)
        assert out.notes[0].kind == "attribution" and out.notes[0].detail["kind"] == attribution.kind
        assert "12345" not in repr(out.notes)
    assert t.transform_media(_media(), CTX).row["project_group"] == str(uuid.UUID(int=5))


# --- sessions, users -----------------------------------------------------------

def test_find_superseded_sessions_archives_all_but_the_newest():
    d = lambda day: dt.datetime(2025, 1, day, tzinfo=UTC)  # noqa: E731
    active = [(1, 10, 2, d(1)), (2, 10, 2, d(3)), (3, 10, 2, d(2)), (4, 10, 3, d(1)), (5, 11, 2, d(1))]
    assert t.find_superseded_sessions(active) == {1: d(3), 3: d(3)}


def test_archived_duplicate_keeps_its_name_and_notes_it():
    row = dict(id=1, name="Period 2", original_name=None, session_code="0A1B2C3D", section=2, module="4",
               created_at=dt.datetime(2025, 1, 1, tzinfo=UTC), is_paused=False, is_archived=False,
               archived_at=None, created_by_id=10, character_set="marvel")
    when = dt.datetime(2025, 2, 1, tzinfo=UTC)
    out = t.transform_session(row, t.TransformContext(archived_sessions={1: when}))
    assert out.row["is_archived"] and out.row["archived_at"] == when
    assert out.row["original_name"] == out.row["name"] == "Period 2"
    assert out.notes[0].kind == "archived_duplicate"
    assert t.transform_session(row, CTX).row == row


@pytest.mark.parametrize("username,staff,superuser,artefact", [
    ("student_42", False, False, True),
    ("student_42", True, False, False),
    ("student_42", False, True, False),
    ("student_x", False, False, False),
    ("mrs_student_4", False, False, False),
])
def test_login_artefacts(username, staff, superuser, artefact):
    assert t.is_login_artifact({"username": username, "is_staff": staff, "is_superuser": superuser}) is artefact


def test_user_media_password_encrypted_only_when_asked():
    row = dict(id=1, username="t", email="", password="md5$x$y", first_name=None, last_name=None, school=None,
               district_id=None, media_password="shared", profile_picture=None, is_active=True, is_staff=True,
               is_superuser=False, last_login=None, date_joined=dt.datetime(2025, 1, 1, tzinfo=UTC))
    assert t.transform_user(row, CTX).row["media_password"] == "shared"
    enc = t.TransformContext(encrypt_media_password=lambda v: "enc:" + v[::-1])
    out = t.transform_user(row, enc)
    assert out.row["media_password"] == "enc:derahs" and out.row["must_reset_password"]
    assert "password" not in out.row


# --- validation ----------------------------------------------------------------

def test_validate_row_rejects_instead_of_truncating():
    table = fm.Student.__table__
    ok = dict(id=1, name="x" * 100, pin_hash="h", section_id=1, admin_id=1)
    assert t.validate_row(ok, table) is None
    long = t.validate_row({**ok, "name": "x" * 101}, table)
    assert long == t.Reject("name: 101 characters, column holds 100")
    assert t.validate_row({**ok, "name": None}, table).reason.startswith("name: NULL")
    assert t.validate_row({**ok, "pin_hash": None}, table, filled_later=("pin_hash",)) is None
    media = dict(id=1, session_id=1, title="t", media_type="gif", uploaded_at=dt.datetime(2025, 1, 1, tzinfo=UTC),
                 graph_likes=0, eye_likes=0, read_likes=0, is_graph=False, is_project=False)
    bad = t.validate_row(media, fm.Media.__table__, {"media_type": frozenset({"image"})})
    assert bad is not None and "media_type" in bad.reason


class _Text(str):
    pass


@pytest.mark.parametrize("profile", ["plan", "datadeckv2"])
def test_the_written_validator_decides_as_validate_row_over_every_table(profile):
    """``row_validator`` (what the row path runs per row) gives exactly what
    ``validate_row`` gives over the entity's tables in order, on rows mixing every kind of
    value near every rule: lengths at and over the limit, NUL, choices, NULL in required
    and filled-later columns, str subclasses, lists, other types."""
    import random

    from migration_bridge.profiles import get_profile

    rng = random.Random(5)
    when = dt.datetime(2025, 1, 1, tzinfo=UTC)
    checked = rejected = 0
    for entity in get_profile(profile).entities:
        for filled_later in ((), (entity.hashed_pin[0],) if entity.hashed_pin else ("name",)):
            validate = t.row_validator(entity.tables, entity.choices, filled_later)
            columns = {c.name: getattr(c.type, "length", None) for table in entity.tables for c in table.columns}
            for _ in range(400):
                row = {}
                for name, length in columns.items():
                    size = length or 20
                    pool = [None, 0, -3, True, False, when, "", "ok", "x" * size, "x" * (size + 1), "a\x00b",
                            _Text("sub"), _Text("y" * (size + 1)), ["/a.png"], ["x\x00"], {"k": 1}, 1.5, b"raw",
                            *sorted(entity.choices.get(name, ())), "not-a-choice"]
                    if name in entity.choices:  # a choice column holds a scalar (a list is unhashable)
                        pool = [v for v in pool if not isinstance(v, (list, dict))]
                    if rng.random() < 0.8:  # mostly valid rows, so that late columns are reached
                        pool = [None, 1, "ok", when, False, *sorted(entity.choices.get(name, ()))]
                    row[name] = rng.choice(pool)
                expected = next((p for table in entity.tables
                                 if (p := t.validate_row(row, table, entity.choices, filled_later))), None)
                assert validate(row) == expected, (entity.name, row)
                checked += 1
                rejected += expected is not None
    assert checked and 0 < rejected < checked


@pytest.mark.parametrize("value", ["a\x00b", ["/media/a.png", "x\x00"], {"k": "\x00"}])
def test_validate_row_rejects_nul_characters(value):
    table = fm.Media.__table__
    row = dict(id=1, session_id=1, title="t", media_type="image", uploaded_at=dt.datetime(2025, 1, 1, tzinfo=UTC),
               graph_likes=0, eye_likes=0, read_likes=0, is_graph=False, is_project=False)
    column = "title" if isinstance(value, str) else "project_images"
    reject = t.validate_row({**row, column: value}, table)
    assert reject == t.Reject(f"{column}: contains a NUL character, which PostgreSQL text cannot store")


@pytest.mark.parametrize("stored, reason", [
    ("{not json", "project_images: invalid JSON, not a list of URLs"),
    ({"a": 1}, "project_images: a JSON dict, not a list of URLs"),
    (3, "project_images: a JSON int, not a list of URLs"),
])
def test_project_images_must_be_a_list(stored, reason):
    src = dict(id=1, session_id=1, title="t", description="", media_type="image", video_file="", image_file="",
               uploaded_at=dt.datetime(2025, 1, 1, tzinfo=UTC), graph_likes=0, eye_likes=0, read_likes=0,
               graph_tag="", is_graph=False, variable_tag="", submitted_password="", student_id=None,
               posted_by_admin_id=None, project_group=None, project_images=stored, is_project=True)
    assert t.transform_media(src, CTX) == t.Reject(reason)
    assert isinstance(t.transform_media({**src, "project_images": None}, CTX), t.Transformed)
    assert isinstance(t.transform_media({**src, "project_images": []}, CTX), t.Transformed)


# --- foreign keys and root causes ----------------------------------------------------

ROOT = t.Root("sessions", 17, "name: 101 characters, column holds 100")


@pytest.mark.parametrize("row, expected", [
    ({"section_id": 1, "admin_id": 5}, None),
    ({"section_id": None, "admin_id": 5}, None),
    ({"section_id": 17, "admin_id": 5}, t.Reject("section_id: sessions id 17 was rejected", root=ROOT)),
    ({"section_id": 99, "admin_id": 5}, t.Reject("section_id: sessions id 99 not found (missing in the source)")),
    # an orphan is the row's own fault even when another parent was rejected
    ({"section_id": 17, "admin_id": 6}, t.Reject(
        "admin_id: users id 6 not found (missing in the source); section_id: sessions id 17 was rejected")),
])
def test_check_parents_names_the_root_cause(row, expected):
    present = {"sessions": {1}, "users": {5}}
    gone = {"sessions": {17: ROOT}, "users": {}}
    assert t.check_parents(row, {"section_id": "sessions", "admin_id": "users"}, present, gone) == expected


def test_root_of_a_reject_is_itself_or_the_root_it_carries():
    assert t.root_of("sessions", 17, t.Reject(ROOT.reason)) == ROOT
    assert t.root_of("students", 3, t.Reject("section_id: sessions id 17 was rejected", root=ROOT)) == ROOT
    assert t.root_of("users", 9, t.Skip("artefact")) == t.Root("users", 9, "skipped: artefact")
