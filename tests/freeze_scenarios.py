"""The read-only freeze through the Django test client, on whatever database
LEGACY_DATABASE_URL names.

Not collected on its own (no ``test_`` prefix): tests/test_freeze.py runs this
module in a subprocess once per legacy dialect (SQLite, MariaDB), because
pytest-django fixes the database at startup. To run it by hand:
``LEGACY_DATABASE_URL=mysql://root@127.0.0.1:3306/x python -m pytest tests/freeze_scenarios.py``
"""
from contextlib import contextmanager

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group
from django.contrib.sessions.backends.db import SessionStore
from django.core.management import call_command
from django.db import connection, transaction
from django.test import RequestFactory
from django.urls import resolve
from django.utils import timezone

from migration_bridge.freeze import (
    LegacyFrozenError, forget_cached_state, get_freeze_state, is_frozen, set_freeze,
)

pytestmark = pytest.mark.django_db

MESSAGE = "Moving to the new site"
TOGGLE_URL = "/admin/migration_bridge/legacyfreeze/"
CHANGE_URL = TOGGLE_URL + "1/change/"


def legacy(name):
    return apps.get_model("video_app", name)


@contextmanager
def refused():
    """Expect the freeze error; the savepoint keeps the test's transaction usable."""
    with pytest.raises(LegacyFrozenError, match="frozen for the migration") as info, transaction.atomic():
        yield info


@pytest.fixture(autouse=True)
def live_afterwards(db):
    yield
    forget_cached_state()  # the row itself is rolled back with the test


@pytest.fixture
def media(db):
    district = legacy("District").objects.create(name="North", code="N")
    teacher = get_user_model().objects.create_user("teacher", password="pw", district=district)
    session = legacy("Session").objects.create(name="Period 2", session_code="ABCD1234", section=2,
                                               created_by=teacher)
    student = legacy("Student").objects.create(name="Iron Man", password="12345", section=session,
                                               admin=teacher)
    return legacy("Media").objects.create(session=session, title="My histogram", media_type="image",
                                          student=student)


@pytest.fixture
def superuser(db):
    return get_user_model().objects.create_superuser("boss", "boss@example.org", "boss-pw")


def test_live_views_read_and_write(client, media):
    student = media.student
    assert client.get(f"/sessions/{media.session_id}/").status_code == 200
    assert client.post(f"/post/{media.pk}/comment/", {"name": "Ann", "text": "Nice bins"}).status_code == 302
    assert client.post(f"/post/{media.pk}/react/", {"student_id": student.pk, "badge": "eye"}).status_code == 302
    page = client.get(f"/post/{media.pk}/")
    assert page.status_code == 200 and "Nice bins" in page.content.decode()
    media.refresh_from_db()
    assert media.eye_likes == 1
    assert legacy("StudentMediaInteraction").objects.get(student=student, media=media).liked_eye
    client.post(f"/post/{media.pk}/react/", {"student_id": student.pk, "badge": "eye"})  # toggles off
    media.refresh_from_db()
    assert media.eye_likes == 0
    assert client.post(f"/post/{media.pk}/react/", {"student_id": student.pk, "badge": "x"}).status_code == 400


def test_frozen_unsafe_requests_get_503_and_safe_ones_work(client, media):
    set_freeze(True, MESSAGE, by="ops")
    for path, data in [(f"/post/{media.pk}/comment/", {"name": "Ann", "text": "hi"}),
                       (f"/post/{media.pk}/react/", {"student_id": media.student_id, "badge": "graph"})]:
        response = client.post(path, data)
        assert response.status_code == 503
        assert response["Retry-After"] == "300"
        assert MESSAGE in response.content.decode()
    assert client.delete(f"/post/{media.pk}/").status_code == 503
    assert client.get(f"/post/{media.pk}/").status_code == 200
    assert client.get(f"/sessions/{media.session_id}/").status_code == 200
    assert not media.comments.exists()


def test_view_bypassing_the_middleware_hits_the_database_guard(media):
    set_freeze(True, MESSAGE, by="ops")
    path = f"/post/{media.pk}/comment/"
    request = RequestFactory().post(path, {"name": "Ann", "text": "hi"})
    with refused():
        resolve(path).func(request, media_id=media.pk)


def test_admin_login_banner_and_unfreeze_while_frozen(client, superuser, media):
    set_freeze(True, MESSAGE, by="ops")
    state = get_freeze_state()
    response = client.post("/admin/login/?next=/admin/", {"username": "boss", "password": "boss-pw"})
    assert response.status_code == 302, response.content.decode()[-500:]
    superuser.refresh_from_db()
    assert superuser.last_login is not None  # auth bookkeeping went through the guard

    page = client.get("/admin/").content.decode()
    assert f"read-only: {MESSAGE}, since {state.since:%Y-%m-%d %H:%M:%S} UTC, by ops" in page
    assert TOGGLE_URL in page  # the superuser's way out
    assert client.get(TOGGLE_URL)["Location"].endswith(CHANGE_URL)
    assert MESSAGE in client.get(CHANGE_URL).content.decode()

    # Other admin writes wait for the freeze to end.
    assert client.post("/admin/video_app/district/add/", {"name": "S", "code": "S"}).status_code == 503

    response = client.post(CHANGE_URL, {"message": ""})  # the checkbox unticked
    assert response.status_code == 302
    assert not is_frozen(use_cache=False)
    assert "migration-bridge-freeze-banner" not in client.get("/admin/").content.decode()
    assert client.post(f"/post/{media.pk}/comment/", {"name": "Ann", "text": "back"}).status_code == 302

    client.post(CHANGE_URL, {"frozen": "on", "message": "Again"})
    state = get_freeze_state()
    assert state.frozen and state.message == "Again" and state.by == "boss"
    assert client.post("/admin/logout/").status_code in (200, 302)


def test_login_needing_a_password_hash_upgrade_waits_for_the_freeze(client):
    # Only last_login may change at login while frozen: Django's re-hashing of an old
    # hash writes `password`, is refused, and the user gets the read-only page.
    old_hash = make_password("old-pw", "salt", "md5")
    get_user_model().objects.create(username="old", is_staff=True, is_superuser=True, password=old_hash)
    set_freeze(True, MESSAGE, by="ops")
    with transaction.atomic():  # the refused write breaks the transaction it ran in
        response = client.post("/admin/login/?next=/admin/", {"username": "old", "password": "old-pw"})
    assert response.status_code == 503 and MESSAGE in response.content.decode()
    assert get_user_model().objects.get(username="old").password == old_hash
    set_freeze(False)
    assert client.post("/admin/login/?next=/admin/", {"username": "old", "password": "old-pw"}).status_code == 302
    assert get_user_model().objects.get(username="old").password.startswith("pbkdf2_sha256$")


def test_a_refused_write_behind_the_middleware_gets_the_read_only_page(client, media):
    # The middleware let the request through (its cached flag said live); the guard,
    # which always reads the flag, refused the write: same 503 page, not a server error.
    set_freeze(True, MESSAGE, by="ops")
    forget_cached_state()
    from migration_bridge import freeze

    freeze._remember(freeze.LIVE)  # this process's cache still says live
    with transaction.atomic():
        response = client.post(f"/post/{media.pk}/comment/", {"name": "Ann", "text": "hi"})
    assert response.status_code == 503 and response["Retry-After"] == "300"
    assert MESSAGE in response.content.decode()
    assert not media.comments.exists()


def test_only_superusers_toggle(client, db):
    staff = get_user_model().objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(staff)
    set_freeze(True, MESSAGE, by="ops")
    assert client.get(CHANGE_URL).status_code == 200  # may look
    assert client.post(CHANGE_URL, {"message": ""}).status_code == 403
    assert is_frozen(use_cache=False)


def test_orm_writes_refused_bookkeeping_allowed_until_unfrozen(media, superuser):
    District, Comment = legacy("District"), legacy("Comment")
    set_freeze(True, MESSAGE, by="ops")
    with refused() as info:
        District.objects.create(name="South", code="S")
    assert MESSAGE in str(info.value) and "video_app_district" in str(info.value)
    with refused():
        District.objects.filter(code="N").update(name="Nord")
    with refused():
        Comment.objects.bulk_create([Comment(media=media, name="a", text="b")])
    with refused():
        media.delete()
    with refused():
        superuser.groups.add(Group.objects.create(name="g"))  # M2M table of the user model
    with refused():
        superuser.email = "new@example.org"
        superuser.save(update_fields=["email", "last_login"])
    with refused(), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {connection.ops.quote_name(District._meta.db_table)}")

    # Sessions, auth bookkeeping, other apps' tables and the freeze table stay writable.
    SessionStore().create()
    superuser.last_login = timezone.now()
    superuser.save(update_fields=["last_login"])  # what login() sends
    Group.objects.create(name="editors")
    set_freeze(True, "new message", by="ops")
    assert District.objects.filter(code="N").exists()

    set_freeze(False)
    District.objects.create(name="South", code="S")
    media.comments.create(name="a", text="b")


def test_cli(media):
    call_command("flask_freeze", "on", "--message", MESSAGE, "--by", "cli")
    assert get_freeze_state().by == "cli"
    with refused():
        media.comments.create(name="a", text="b")
    call_command("flask_freeze", "status")
    call_command("flask_freeze", "off")
    assert not is_frozen()
    media.comments.create(name="a", text="b")
