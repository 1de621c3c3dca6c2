"""Outside check: does the real DataDeckv2 app open a database made by flask_models.datadeckv2?

Run through scripts/datadeckv2_outside_check.sh, which prepares a throwaway virtualenv
with the real app's requirements and a checkout of the app. Three steps, each a separate
process because the two sides live in different virtualenvs:

  prepare DB_URL UPLOADS_DIR   (our .venv)   create our mirrored schema, insert a small
                                              world, write an image under the app's uploads
  appschema DB_URL APP_DIR     (app venv)     let the real app run its own db.create_all()
                                              on an empty database (for the schema diff)
  compare OURS_URL APPS_URL    (our .venv)    compare the two schemas by reflection
  probe DB_URL APP_DIR         (app venv)     start the real app on our database and use its
                                              test client: logins, pages, files

Nothing from the app is imported into our repository; the app runs from its own checkout.
"""
from __future__ import annotations

import json
import os
import re
import sys

TEACHER_PASSWORD = "teacher-pass-1"
OBSERVER_PASSWORD = "observer-pass-1"
ADMIN_PASSWORD = "admin-pass-1"
STUDENT_PIN = "12345"  # legacy PINs are 5 digits
SESSION_CODE = "OUTSIDE1"
IMAGE_KEY = "migrated/media/1/sample.png"
PROJECT_KEYS = ["migrated/media/2/p1.png", "migrated/media/2/p2.png"]
AVATAR_URL = "/static/uploads/migrated/avatars/bear.png"


# --------------------------------------------------------------------------- prepare
def prepare(db_url: str, uploads_dir: str) -> None:
    import datetime as dt
    import struct
    import zlib

    import sqlalchemy as sa
    from django.contrib.auth.hashers import PBKDF2PasswordHasher, PBKDF2SHA1PasswordHasher, ScryptPasswordHasher
    from sqlalchemy.orm import Session as OrmSession
    from werkzeug.security import generate_password_hash

    from flask_models import datadeckv2 as d
    from migration_bridge.passwords import convert_django_hash

    def png() -> bytes:  # a 1x1 PNG, no Pillow needed
        def chunk(kind, data):
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b""))

    for key in [IMAGE_KEY, *PROJECT_KEYS, AVATAR_URL.removeprefix("/static/uploads/")]:
        path = os.path.join(uploads_dir, key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(png())

    # Teachers whose Django hashes convert to werkzeug (one per convertible hasher),
    # the way the migration converts them; the cost parameters are lowered to keep the
    # check fast, the format is the real one.
    django_hashes = {
        "pbkdf2_sha256": PBKDF2PasswordHasher().encode(TEACHER_PASSWORD, "saltsaltsalt1234", iterations=1000),
        "pbkdf2_sha1": PBKDF2SHA1PasswordHasher().encode(TEACHER_PASSWORD, "saltsaltsalt5678", iterations=1000),
        "scrypt": ScryptPasswordHasher().encode(TEACHER_PASSWORD, "saltsaltsalt9012", n=2**14, r=8, p=1),
    }
    engine = sa.create_engine(db_url)
    d.drop_all(engine)
    d.create_all(engine)
    now = dt.datetime.now(dt.timezone.utc)
    pin_hash = generate_password_hash(STUDENT_PIN, method="pbkdf2:sha256:600000")
    with OrmSession(engine) as s, s.begin():
        district = d.District(name="Outside District", code="OD")
        s.add(district)
        s.flush()
        school = d.School(name="Outside School", district_id=district.id)
        module = d.Module(name="Module 2", sort_order=2)
        s.add_all([school, module])
        s.flush()
        teachers = {}
        for i, (hasher, encoded) in enumerate(django_hashes.items(), start=1):
            outcome = convert_django_hash(encoded)
            assert outcome.password_hash, (hasher, outcome)
            teachers[hasher] = d.User(
                username=f"teacher_{hasher}", email=f"teacher{i}@example.org",
                password_hash=outcome.password_hash, first_name="Teach", last_name=f"Er{i}",
                role=d.Role.TEACHER, school_id=school.id, district_id=district.id)
        # A teacher whose hash nothing can check (what must_reset accounts get).
        teachers["unusable"] = d.User(
            username="teacher_unusable", email="teacher-unusable@example.org", password_hash="!must-reset",
            role=d.Role.TEACHER, school_id=school.id, district_id=district.id)
        admin = d.User(username="admin", email="admin@example.org",
                       password_hash=generate_password_hash(ADMIN_PASSWORD, method="pbkdf2:sha256"),
                       role=d.Role.ADMIN)
        s.add_all([*teachers.values(), admin])
        s.flush()
        teacher = teachers["pbkdf2_sha256"]
        observer = d.Observer(
            username="observer1", email="observer1@example.org",
            password_hash=generate_password_hash(OBSERVER_PASSWORD, method="pbkdf2:sha256"),
            role=d.Role.OBSERVER, school_id=school.id, district_id=district.id, created_by_id=admin.id)
        s.add(observer)
        session = d.Session(name="Legacy session", session_code=SESSION_CODE, section=1,
                            module_id=module.id, created_by_id=teacher.id, character_set="animals")
        s.add(session)
        s.flush()
        student = d.Student(
            username="legacy-student-1", email="legacy-student-1@students.invalid",
            password_hash="!pin-login-only", role=d.Role.STUDENT, character_name="Bear01",
            avatar_path=AVATAR_URL, teacher_id=teacher.id, section_id=session.id,
            pin_hash=pin_hash, current_pin=None, school_id=school.id, district_id=district.id)
        s.add(student)
        s.flush()
        image = d.Media(session_id=session.id, title="A graph", media_type="image", image_file=IMAGE_KEY,
                        student_id=student.id, uploaded_at=now, graph_likes=1, is_graph=True,
                        graph_tag="bar", variable_tag="height")
        project = [d.Media(session_id=session.id, title=f"Project {i}", media_type="image", image_file=key,
                           student_id=student.id, uploaded_at=now, is_project=True,
                           project_group="11111111-2222-3333-4444-555555555555",
                           project_images=PROJECT_KEYS if i == 0 else None)
                   for i, key in enumerate(PROJECT_KEYS)]
        video = d.Media(session_id=session.id, title="A video", media_type="video",
                        video_file="migrated/media/4/clip.mp4", student_id=student.id, uploaded_at=now)
        s.add_all([image, *project, video])
        s.flush()
        comment = d.Comment(media_id=image.id, text="Nice graph", name="Bear01", student_id=student.id)
        s.add(comment)
        s.flush()
        s.add(d.Comment(media_id=image.id, parent_id=comment.id, text="Thanks", name="Ms Teacher",
                        is_admin=True, admin_avatar=AVATAR_URL))
        s.add(d.StudentMediaInteraction(student_id=student.id, media_id=image.id, liked_graph=True))
        ids = {"teachers": {k: v.id for k, v in teachers.items()}, "observer": observer.id, "admin": admin.id,
               "session": session.id, "student": student.id, "school": school.id, "district": district.id,
               "image": image.id, "project": [m.id for m in project], "video": video.id,
               "project_group": project[0].project_group}
    engine.dispose()
    print(json.dumps(ids))


# --------------------------------------------------------------------------- real app side
def _import_app(db_url: str, app_dir: str):
    """Import the real app configured for db_url (its production config reads DATABASE_URL)."""
    os.environ["FLASK_ENV"] = "production"
    os.environ["DATABASE_URL"] = db_url
    os.environ.setdefault("SECRET_KEY", "outside-check")
    os.chdir(app_dir)
    sys.path.insert(0, app_dir)
    import app as app_module  # the real app's app.py; runs create_app() and db.create_all()

    return app_module


def appschema(db_url: str, app_dir: str) -> None:
    _import_app(db_url, app_dir)
    print("the real app ran db.create_all() on", db_url)


def probe(db_url: str, app_dir: str, ids_json: str) -> None:
    import sqlalchemy as sa

    ids = json.loads(ids_json)
    before = set(sa.inspect(sa.create_engine(db_url)).get_table_names())
    app_module = _import_app(db_url, app_dir)
    after = set(sa.inspect(sa.create_engine(db_url)).get_table_names())
    app = app_module.app
    app.config["PROPAGATE_EXCEPTIONS"] = True  # record the exception rather than a 500 page
    from importlib.metadata import version

    print("real app's packages: " + ", ".join(
        f"{name} {version(name)}" for name in ("Flask", "Flask-SQLAlchemy", "Flask-Login", "Flask-WTF",
                                                "SQLAlchemy", "Werkzeug", "psycopg2-binary")))
    print(f"db.create_all() on our database added tables: {sorted(after - before) or 'none'}")
    results = []

    def record(who, what, fn):
        try:
            status, note = fn()
        except Exception as exc:  # noqa: BLE001 - the point is to see what fails
            status, note = "EXC", f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
        results.append((who, what, status, note))

    def csrf(client, url):
        html = client.get(url).get_data(as_text=True)
        m = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or \
            re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html)
        return m.group(1) if m else ""

    def staff_login(client, login, password):
        token = csrf(client, "/login")
        r = client.post("/login", data={"username": login, "password": password, "csrf_token": token})
        text = r.get_data(as_text=True)
        if r.status_code == 302:
            return r.status_code, f"-> {r.headers['Location']}"
        return r.status_code, "rejected: 'Invalid username or password.'" if "Invalid username" in text else "no redirect"

    def page(client, url, must=None):
        def go():
            r = client.get(url)
            if not r.mimetype.startswith("text/"):
                data = r.get_data()
                r.close()
                return r.status_code, f"{r.mimetype}, {len(data)} bytes"
            body = r.get_data(as_text=True)
            note = f"-> {r.headers['Location']}" if r.status_code in (301, 302) else f"{len(body)} bytes"
            if must and r.status_code == 200:
                note += "; " + ", ".join(f"{m!r} {'found' if m in body else 'MISSING'}" for m in must)
            return r.status_code, note
        return go

    sid, mid = ids["session"], ids["image"]
    for hasher, tid in ids["teachers"].items():
        client = app.test_client()
        who = f"teacher ({hasher})"
        password = TEACHER_PASSWORD if hasher != "unusable" else "anything"
        login = f"teacher_{hasher}"
        record(who, "POST /login by username", lambda: staff_login(client, login, password))
        if hasher == "pbkdf2_sha256":
            record(who, "GET /", page(client, "/"))
            record(who, "GET /sessions", page(client, "/sessions", ["Legacy session"]))
            record(who, f"GET /sessions/{sid}", page(client, f"/sessions/{sid}", ["Bear01", "A graph"]))
            record(who, f"GET /media/{mid}", page(client, f"/media/{mid}", [f"/static/uploads/{IMAGE_KEY}", "Nice graph", AVATAR_URL]))
            record(who, f"GET /post/{mid}", page(client, f"/post/{mid}", [IMAGE_KEY]))
            pid = ids["project"][0]
            record(who, f"GET /post/{pid} (project)", page(client, f"/post/{pid}", PROJECT_KEYS))
            record(who, f"GET /media/project/<group>", page(client, f"/media/project/{ids['project_group']}", PROJECT_KEYS))
            record(who, f"GET /media/{ids['video']} (video)", page(client, f"/media/{ids['video']}", ["clip.mp4"]))
            record(who, f"GET /post/{ids['video']} (video)", page(client, f"/post/{ids['video']}", ["clip.mp4"]))
            record(who, "GET /students", page(client, "/students", ["Bear01"]))
            record(who, f"GET /students/{ids['student']}", page(client, f"/students/{ids['student']}", ["Bear01"]))
            record(who, f"GET /static/uploads/{IMAGE_KEY}", page(client, f"/static/uploads/{IMAGE_KEY}"))
            record(who, f"GET {AVATAR_URL}", page(client, AVATAR_URL))
    client = app.test_client()
    record("teacher (pbkdf2_sha256)", "POST /login by email", lambda: staff_login(client, "teacher1@example.org", TEACHER_PASSWORD))

    client = app.test_client()
    record("observer", "POST /login", lambda: staff_login(client, "observer1@example.org", OBSERVER_PASSWORD))
    record("observer", "GET /observer/dashboard", page(client, "/observer/dashboard", ["Outside School"]))
    tid = ids["teachers"]["pbkdf2_sha256"]
    record("observer", f"GET /observer/teachers/{tid}", page(client, f"/observer/teachers/{tid}", ["Legacy session"]))
    record("observer", f"GET /observer/schools/{ids['school']}", page(client, f"/observer/schools/{ids['school']}"))

    client = app.test_client()
    record("admin", "POST /login", lambda: staff_login(client, "admin", ADMIN_PASSWORD))
    record("admin", "GET /admin", page(client, "/admin"))

    client = app.test_client()

    def student_login(pin):
        def go():
            token = csrf(client, "/student/login")
            r = client.post("/student/login", data={"pin": pin, "district_id": "0", "school_id": "0",
                                                     "csrf_token": token})
            if r.status_code == 302:
                return r.status_code, f"-> {r.headers['Location']}"
            text = r.get_data(as_text=True)
            return r.status_code, "rejected: 'Invalid student password.'" if "Invalid student password" in text else "no redirect"
        return go

    record("student", "POST /student/login wrong PIN", student_login("54321"))
    record("student", f"POST /student/login PIN {STUDENT_PIN}", student_login(STUDENT_PIN))
    record("student", "GET / (student dashboard)", page(client, "/", ["Bear01"]))
    record("student", f"GET /sessions/{sid}", page(client, f"/sessions/{sid}", ["A graph"]))
    record("student", f"GET /sessions/{sid}/student", page(client, f"/sessions/{sid}/student", ["A graph"]))
    record("student", f"GET /media/{mid}", page(client, f"/media/{mid}", [f"/static/uploads/{IMAGE_KEY}"]))
    record("student", f"GET /post/{mid}", page(client, f"/post/{mid}"))
    client = app.test_client()
    record("student", "POST /login with email + PIN (staff form)",
           lambda: staff_login(client, "legacy-student-1@students.invalid", STUDENT_PIN))
    html = app.test_client().get("/student/login").get_data(as_text=True)
    m = re.search(r'<input[^>]*name="pin"[^>]*>', html)
    results.append(("student", "PIN input as rendered", "-", m.group(0) if m else "not found"))

    # The app's own PIN reset (werkzeug's default method) on this database.
    client = app.test_client()
    staff_login(client, "teacher_pbkdf2_sha256", TEACHER_PASSWORD)

    def reset_pin():
        home = client.get("/").get_data(as_text=True)
        token = re.search(r'name="csrf-token" content="([^"]+)"', home).group(1)
        r = client.post(f"/students/{ids['student']}/reset-pin", headers={"X-CSRFToken": token})
        with sa.create_engine(db_url).connect() as conn:
            stored = conn.execute(sa.text("SELECT pin_hash FROM students WHERE id = :i"), {"i": ids["student"]}).scalar()
        return r.status_code, f"{r.get_data(as_text=True).strip()[:60]}; stored pin_hash: {stored.split('$')[0]}, {len(stored)} chars"

    record("teacher (pbkdf2_sha256)", f"POST /students/{ids['student']}/reset-pin (app's own hash)", reset_pin)

    width = max(len(w) for w, *_ in results)
    wwhat = max(len(w) for _, w, *_ in results)
    for who, what, status, note in results:
        print(f"{who:<{width}}  {what:<{wwhat}}  {status!s:<4} {note}")


# --------------------------------------------------------------------------- compare
def compare(ours_url: str, apps_url: str) -> int:
    import sqlalchemy as sa

    def describe(url):
        engine = sa.create_engine(url)
        insp = sa.inspect(engine)
        out = {}
        for table in sorted(insp.get_table_names()):
            cols = {c["name"]: (str(c["type"]), c["nullable"], str(c.get("default"))) for c in insp.get_columns(table)}
            uniques = sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(table))
            fks = sorted((tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"]))
                         for f in insp.get_foreign_keys(table))
            idx = sorted((i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in insp.get_indexes(table))
            pk = tuple(insp.get_pk_constraint(table)["constrained_columns"])
            out[table] = {"columns": cols, "unique": uniques, "fks": fks, "indexes": idx, "pk": pk}
        if engine.dialect.name == "sqlite":
            with engine.connect() as conn:
                sqls = conn.execute(sa.text("SELECT name, sql FROM sqlite_master WHERE type='table'")).all()
            for name, sql in sqls:
                if name in out:
                    out[name]["autoincrement"] = "AUTOINCREMENT" in (sql or "")
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:
                enums = conn.execute(sa.text(
                    "SELECT t.typname, string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_type t "
                    "JOIN pg_enum e ON e.enumtypid = t.oid GROUP BY t.typname ORDER BY 1")).all()
            out["<enum types>"] = {n: v for n, v in enums}
        engine.dispose()
        return out

    ours, apps = describe(ours_url), describe(apps_url)
    differences = 0
    for table in sorted(set(ours) | set(apps)):
        if ours.get(table) != apps.get(table):
            differences += 1
            print(f"DIFFERS {table}:\n  ours: {ours.get(table)}\n  app:  {apps.get(table)}")
    print(f"schema compare ({sa.create_engine(ours_url).dialect.name}): {len(apps)} objects in the app's schema, "
          f"{differences} differences")
    return 1 if differences else 0


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "prepare":
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        prepare(*args)
    elif mode == "appschema":
        appschema(*args)
    elif mode == "compare":
        sys.exit(compare(*args))
    elif mode == "probe":
        probe(*args)
    else:
        sys.exit(f"unknown mode {mode}")
