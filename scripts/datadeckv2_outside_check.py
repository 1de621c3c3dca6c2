"""Outside check: does the real DataDeckv2 app open a database made by flask_models.datadeckv2?

Run through scripts/datadeckv2_outside_check.sh, which prepares a throwaway virtualenv
with the real app's requirements and a checkout of the app. Each step is a separate
process because the two sides live in different virtualenvs.

Schema mode (a small world inserted through our mirrored models):

  prepare DB_URL UPLOADS_DIR   (our .venv)   create our mirrored schema, insert a small
                                              world, write an image under the app's uploads
  appschema DB_URL APP_DIR     (app venv)     let the real app run its own db.create_all()
                                              on an empty database (for the schema diff)
  compare OURS_URL APPS_URL    (our .venv)    compare the two schemas by reflection
  probe DB_URL APP_DIR IDS     (app venv)     start the real app on our database and use its
                                              test client: logins, pages, files

Export mode (a target produced by ``export_to_flask --target-schema datadeckv2`` from
``seed_legacy``; the shell script runs the export and verify_flask first):

  pick TARGET_URL LEGACY_SQLITE MANIFEST LEGACY_MEDIA OUT_JSON   (our .venv)
        choose whom and what to probe: ids from legacy_id_map, credentials from the seed
        manifest, PINs from the legacy database, source files to compare bytes with;
        also checks on the rows themselves (current_pin, pin_hash length, hash formats)
  probe-export DB_URL APP_DIR SUBJECTS_JSON                      (app venv)
        the real app on that target: logins through the real forms, the pages of each
        person, every <img> on them, the student PIN login timed; then a sweep of every
        migrated session, media, project, student and observer page

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


# --------------------------------------------------------------------------- export mode: pick
CONVERTIBLE = ("pbkdf2_sha256", "pbkdf2_sha1", "scrypt")   # Django hashers werkzeug can check
NOT_CONVERTIBLE = ("argon2", "bcrypt_sha256", "md5", "unusable")
UNOWNED_USERNAME = "legacy-unowned-sessions"  # migration_bridge.profiles.datadeckv2_transforms
LEGACY_STATIC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                             "legacy_app", "video_app", "static")


def pick(target_url: str, legacy_db: str, manifest_path: str, legacy_media: str, out_path: str) -> None:
    """Whom and what to probe, from the target, the legacy DB and the seed manifest. Writes
    OUT_JSON (plaintext seed passwords and PINs: it stays in the work dir)."""
    import sqlite3

    import sqlalchemy as sa

    manifest = json.load(open(manifest_path, encoding="utf-8"))
    legacy = sqlite3.connect(f"file:{legacy_db}?mode=ro", uri=True)
    engine = sa.create_engine(target_url)
    conn = engine.connect()

    def rows(sql, **params):
        return [dict(r) for r in conn.execute(sa.text(sql), params).mappings()]

    def one(sql, **params):
        found = rows(sql, **params)
        return found[0] if found else None

    id_map = {(e, lid): tid for e, lid, tid in
              conn.execute(sa.text("SELECT entity, legacy_id, target_id FROM legacy_id_map"))}
    legacy_of = {(e, tid): lid for (e, lid), tid in id_map.items()}
    checks = []  # (who, what, status, note): facts about the rows, printed with the probes

    # --- the rows themselves
    st = one("SELECT count(*) AS n, count(current_pin) AS with_pin, count(pin_hash) AS hashed, "
             "max(length(pin_hash)) AS longest FROM students")
    checks.append(("db", "students: current_pin NULL", "ok" if st["with_pin"] == 0 else "FAIL",
                   f"{st['n']} students, {st['with_pin']} with current_pin"))
    checks.append(("db", "students: pin_hash <= 128 chars", "ok" if (st["longest"] or 0) <= 128 else "FAIL",
                   f"{st['hashed']} hashed, longest {st['longest']} chars; methods: "
                   + ", ".join(r["m"] for r in rows(
                       "SELECT DISTINCT substr(pin_hash, 1, instr(pin_hash, '$') - 1) AS m FROM students"
                       if engine.dialect.name == "sqlite" else
                       "SELECT DISTINCT split_part(pin_hash, '$', 1) AS m FROM students"))))
    hashes = rows("SELECT password_hash AS h FROM users")
    odd = [r["h"][:20] for r in hashes if not r["h"].startswith(("pbkdf2:", "scrypt:", "!"))]
    checks.append(("db", "users: password_hash werkzeug or '!...'", "ok" if not odd else "FAIL",
                   f"{len(hashes)} users; others: {odd[:3] or 'none'}"))
    owner = one("SELECT id, password_hash, role FROM users WHERE username = :u", u=UNOWNED_USERNAME)
    checks.append(("db", f"placeholder '{UNOWNED_USERNAME}'", "ok" if owner else "-",
                   f"id {owner['id']}, role {owner['role']}, password_hash {owner['password_hash']!r}, "
                   f"{one('SELECT count(*) AS n FROM sessions WHERE created_by_id = :i', i=owner['id'])['n']} sessions"
                   if owner else "absent (no unowned session)"))

    # --- content helpers (target ids)
    def image_file_source(media_id):
        """The legacy file behind a migrated media's image (media keep their ids)."""
        r = legacy.execute("SELECT image_file FROM video_app_media WHERE id = ?", (media_id,)).fetchone()
        return os.path.join(legacy_media, r[0]) if r and r[0] else None

    def image_media(where, **params):
        """Image media (by the given condition) whose legacy file exists, newest first."""
        for m in rows(f"SELECT m.id, m.title, m.image_file, m.session_id FROM media m JOIN sessions s "
                      f"ON s.id = m.session_id WHERE m.media_type = 'image' AND m.image_file IS NOT NULL "
                      f"AND NOT m.is_project AND {where} ORDER BY m.uploaded_at DESC, m.id", **params):
            src = image_file_source(m["id"])
            if src and os.path.exists(src):
                return {**m, "source": src}
        return None

    def project(where, **params):
        """A project group (prefer one whose rows carry project_images), its rows and files."""
        groups = rows(f"SELECT m.project_group AS g, count(*) AS n FROM media m JOIN sessions s ON s.id = m.session_id "
                      f"WHERE m.is_project AND m.project_group IS NOT NULL AND {where} GROUP BY m.project_group "
                      f"ORDER BY count(*) DESC, m.project_group", **params)
        best = None
        for g in groups:
            members = rows("SELECT id, title, image_file, project_images FROM media WHERE project_group = :g "
                           "ORDER BY id", g=g["g"])
            extra = []
            for m in members:
                value = m["project_images"]
                value = json.loads(value) if isinstance(value, str) else value
                extra += value or []
            files = {f"/static/uploads/{m['image_file']}": image_file_source(m["id"]) for m in members
                     if m["image_file"]}
            files = {url: src for url, src in files.items() if src and os.path.exists(src)}
            cand = {"group": g["g"], "rows": [m["id"] for m in members], "title": members[0]["title"],
                    "imgs": files, "project_images": extra}
            if files and (best is None or (extra and not best["project_images"])):
                best = cand
        return best

    def avatar(url):
        if not url or not url.startswith("/static/uploads/legacy-static/"):
            return None
        src = os.path.join(LEGACY_STATIC, url.removeprefix("/static/uploads/legacy-static/"))
        return src if os.path.exists(src) else None

    def student_with_avatar(where, **params):
        for s in rows(f"SELECT st.id, st.character_name, st.avatar_path, st.section_id FROM students st "
                      f"JOIN users u ON u.id = st.id WHERE st.avatar_path IS NOT NULL AND {where} "
                      f"ORDER BY (SELECT count(*) FROM media m WHERE m.student_id = st.id) DESC, st.id", **params):
            if avatar(s["avatar_path"]):
                return {**s, "avatar_source": avatar(s["avatar_path"])}
        return None

    def page(url, label=None, must=(), imgs=None, expect=200, nav=None, unshown=()):
        """A page to open: texts it must show, images it must show (URL -> legacy file), a
        navigation menu to look for, project_images URLs to count on it."""
        return {"url": url, "label": label or f"GET {url}", "must": [m for m in must if m], "imgs": imgs or {},
                "expect": expect, "nav": nav, "project_images": list(unshown)}

    def file_fetch(url, src, label):
        return {"url": url, "label": label, "file": src}

    def content_pages(sessions_where, params):
        """Session, image, project and student pages for sessions matching the condition."""
        pages = []
        sess = rows(f"SELECT s.id, s.name, s.is_archived FROM sessions s WHERE {sessions_where} "
                    f"ORDER BY s.is_archived, (SELECT count(*) FROM media m WHERE m.session_id = s.id) DESC, s.id",
                    **params)
        if not sess:
            return pages, None
        s0 = sess[0]
        media = image_media(f"s.id = {int(s0['id'])}") or image_media(sessions_where, **params)
        pages.append(page(f"/sessions/{s0['id']}", f"GET /sessions/<id> (session {s0['id']})",
                          must=[s0["name"], media and media["title"]]))
        if media:
            pages.append(page(f"/media/{media['id']}", f"GET /media/<id> (image, media {media['id']})",
                              must=[media["title"]],
                              imgs={f"/static/uploads/{media['image_file']}": media["source"]}))
        proj = project(sessions_where, **params)
        if proj:
            pages.append(page(f"/media/project/{proj['group']}",
                              f"GET /media/project/<group> (media {','.join(map(str, proj['rows']))})",
                              must=[proj["title"]], imgs=proj["imgs"],
                              unshown=[f"/static/uploads/{k}" for k in proj["project_images"]]))
        else:
            pages.append({"label": "GET /media/project/<group>", "none": "no project in these sessions"})
        return pages, s0

    subjects = []

    def staff(who, login, password, pages, expect="login", legacy=None):
        subjects.append({"who": who, "kind": "staff", "login": login, "password": password, "expect": expect,
                         "pages": pages, "legacy": legacy})

    users = {r["id"]: r for r in rows("SELECT id, username, email, role, password_hash, district_id, school_id, "
                                       "first_name, last_name FROM users WHERE type = 'user'")}
    teachers = [e for e in manifest["passwords"]["customadmin"] if ("users", e["id"]) in id_map]

    def weight(tid):
        return one("SELECT (SELECT count(*) FROM sessions WHERE created_by_id = :t) AS s, "
                   "(SELECT count(DISTINCT project_group) FROM media m JOIN sessions s ON s.id = m.session_id "
                   " WHERE s.created_by_id = :t AND m.is_project) AS p, "
                   "(SELECT count(*) FROM students WHERE teacher_id = :t) AS st", t=tid)

    def teacher_pages(tid):
        pages, s0 = content_pages("s.created_by_id = :t", {"t": tid})
        recent = one("SELECT name FROM sessions WHERE created_by_id = :t AND NOT is_archived "
                     "ORDER BY created_at DESC LIMIT 1", t=tid)
        pages.insert(0, page("/", "GET / (dashboard)", must=[recent and recent["name"]]))
        pages.insert(1, page("/sessions", must=[s0 and s0["name"]]))
        stu = student_with_avatar("st.teacher_id = :t", t=tid)
        pages.append(page("/students", must=[stu and stu["character_name"]]))
        if stu:
            pages.append(page(f"/students/{stu['id']}", f"GET /students/<id> (student {stu['id']})",
                              must=[stu["character_name"]], imgs={stu["avatar_path"]: stu["avatar_source"]}))
            pages.append(file_fetch(stu["avatar_path"], stu["avatar_source"], "GET <avatar URL>"))
        return pages

    # Teachers: one per convertible hasher (a TEACHER when there is one, else an ADMIN)
    for hasher in CONVERTIBLE:
        cands = [e for e in teachers if e["hasher"] == hasher and e["plaintext"]
                 and not users[id_map[("users", e["id"])]]["password_hash"].startswith("!")]
        cands.sort(key=lambda e: (users[id_map[("users", e["id"])]]["role"] != "TEACHER",
                                  -weight(id_map[("users", e["id"])])["p"],
                                  -weight(id_map[("users", e["id"])])["s"], e["id"]))
        if not cands:
            checks.append(("db", f"teacher ({hasher})", "-", "no migrated user with this hasher can log in"))
            continue
        e = cands[0]
        tid = id_map[("users", e["id"])]
        u = users[tid]
        if u["role"] == "TEACHER":
            staff(f"teacher {u['username']} ({hasher})", u["username"], e["plaintext"], teacher_pages(tid),
                  legacy=e["id"])
        else:
            checks.append(("db", f"teacher ({hasher})", "-", f"the only migrated {hasher} account able to log in is "
                           f"{u['username']} (legacy id {e['id']}), a superuser: role {u['role']}"))
            staff(f"{u['role'].lower()} {u['username']} ({hasher})", u["username"], e["plaintext"],
                  [page("/admin"), page("/sessions")], legacy=e["id"])
    # A teacher whose legacy username did not fit (synthesized): by e-mail
    for e in teachers:
        u = users[id_map[("users", e["id"])]]
        if u["username"] != e["username"] and e["plaintext"] and not u["password_hash"].startswith("!"):
            staff(f"teacher {u['username']} ({e['hasher']}, legacy username {len(e['username'])} chars)",
                  u["email"], e["plaintext"], [page("/sessions")], legacy=e["id"])
            break
    # One teacher per non-convertible hasher: a clean rejection, never a 500
    for hasher in NOT_CONVERTIBLE:
        for e in teachers:
            if e["hasher"] == hasher and users[id_map[("users", e["id"])]]["role"] == "TEACHER":
                u = users[id_map[("users", e["id"])]]
                staff(f"teacher {u['username']} ({hasher})", u["username"], e["plaintext"] or "anything", [],
                      expect="reject", legacy=e["id"])
                break
    # The placeholder owner of teacherless sessions
    if owner:  # its stored value itself, typed as a password, must not let anyone in either
        staff(f"placeholder {UNOWNED_USERNAME}", UNOWNED_USERNAME, owner["password_hash"], [], expect="reject")
    # An admin (superuser) with a convertible hash: all sessions, including the placeholder's
    admins = [e for e in teachers if users[id_map[("users", e["id"])]]["role"] == "ADMIN"
              and e["hasher"] in CONVERTIBLE and e["plaintext"]]
    if admins:
        e = admins[0]
        u = users[id_map[("users", e["id"])]]
        pages = [page("/admin")]
        if owner:
            unowned, s0 = content_pages("s.created_by_id = :t", {"t": owner["id"]})
            if s0:  # the app lists 12 sessions per page, newest first
                newer = one("SELECT count(*) AS n FROM sessions WHERE created_at > "
                            "(SELECT created_at FROM sessions WHERE id = :i)", i=s0["id"])["n"]
                pages.append(page(f"/sessions?page={newer // 12 + 1}",
                                  f"GET /sessions?page={newer // 12 + 1} (all; a placeholder-owned session)",
                                  must=[s0["name"]]))
            pages += unowned
        pages.append(page("/students", "GET /students (the app: teachers only)", expect=302))
        staff(f"admin {u['username']} ({e['hasher']})", u["username"], e["plaintext"], pages, legacy=e["id"])

    # Observers: convertible hashers, and one that is not
    observers = [e for e in manifest["passwords"]["observer"] if ("observers", e["id"]) in id_map]
    done = set()
    for e in observers:
        oid = id_map[("observers", e["id"])]
        o = one("SELECT id, email, district_id, school_id, password_hash FROM users WHERE id = :i", i=oid)
        if e["hasher"] in CONVERTIBLE and e["hasher"] not in done and not o["password_hash"].startswith("!"):
            done.add(e["hasher"])
            district = one("SELECT name FROM districts WHERE id = :d", d=o["district_id"])
            teacher = one("SELECT u.id, u.last_name, u.school_id FROM users u WHERE u.role = 'TEACHER' "
                          "AND u.district_id = :d ORDER BY (SELECT count(*) FROM sessions s WHERE s.created_by_id = u.id)"
                          " DESC, u.id LIMIT 1", d=o["district_id"])
            n_teachers = one("SELECT count(*) AS n FROM users WHERE role = 'TEACHER' AND district_id = :d",
                             d=o["district_id"])["n"]
            pages = [page("/observer/dashboard", must=[district and district["name"]],
                          nav="District Sessions (")]
            if teacher:
                ts = one("SELECT id, name FROM sessions WHERE created_by_id = :t ORDER BY created_at DESC LIMIT 1",
                         t=teacher["id"])
                pages.append(page(f"/observer/teachers/{teacher['id']}", f"GET /observer/teachers/<id> ({teacher['id']})",
                                  must=[ts and ts["name"]]))
                if teacher["school_id"]:
                    pages.append(page(f"/observer/schools/{teacher['school_id']}",
                                      f"GET /observer/schools/<id> ({teacher['school_id']})", must=[teacher["last_name"]]))
                if ts:
                    pages.append(page(f"/sessions/{ts['id']}", f"GET /sessions/<id> (session {ts['id']})",
                                      must=[ts["name"]]))
            subjects.append({"who": f"observer {o['email']} ({e['hasher']})", "kind": "staff", "login": o["email"],
                             "password": e["plaintext"], "expect": "login", "pages": pages, "legacy": e["id"],
                             "note": f"district {o['district_id']}, school_id {o['school_id']}, "
                                     f"{n_teachers} TEACHER users in the district"})
        elif e["hasher"] == "argon2" and "argon2" not in done:
            done.add("argon2")
            staff(f"observer {o['email']} (argon2)", o["email"], e["plaintext"], [], expect="reject", legacy=e["id"])

    # A student by PIN: the legacy PIN of a migrated student, unique among all migrated students
    pins = {}
    for (entity, lid), tid in id_map.items():
        if entity == "students":
            pin = legacy.execute("SELECT password FROM video_app_student WHERE id = ?", (lid,)).fetchone()[0]
            pins.setdefault(pin, []).append(tid)
    info = {r["id"]: r for r in rows("SELECT st.id, st.character_name, st.avatar_path, st.section_id, u.district_id, "
                                      "u.school_id FROM students st JOIN users u ON u.id = st.id")}

    def sharing(scope):
        """Migrated students whose PIN another migrated student in the same scope also has."""
        seen = {}
        for pin, tids in pins.items():
            for t in tids:
                seen.setdefault((pin, scope(info[t])), []).append(t)
        return sum(len(t) for t in seen.values() if len(t) > 1)
    size = {d: sum(1 for r in info.values() if r["district_id"] == d) for d in {r["district_id"] for r in info.values()}}
    pin_of = {tid: pin for pin, tids in pins.items() for tid in tids}
    best = None
    for tid, r in info.items():
        if len(pins[pin_of[tid]]) != 1 or r["district_id"] is None or not avatar(r["avatar_path"]):
            continue
        media = one("SELECT count(*) AS n FROM media WHERE session_id = :s AND media_type = 'image'", s=r["section_id"])
        key = (size[r["district_id"]], media["n"] > 0, tid)  # the biggest district, the latest id: a long scan
        if best is None or key > best[0]:
            best = (key, tid)
    if best:
        tid = best[1]
        r = info[tid]
        pages = [page("/", "GET / (student dashboard)", must=[r["character_name"]],
                      imgs={r["avatar_path"]: avatar(r["avatar_path"])})]
        pages.append(page(f"/sessions/{r['section_id']}", f"GET /sessions/<id> (own session {r['section_id']})"))
        pages.append(page(f"/sessions/{r['section_id']}/student", "GET /sessions/<id>/student"))
        more, _ = content_pages(f"s.id = {int(r['section_id'])}", {})
        pages += [p for p in more if not p.get("url", "").startswith("/sessions/")]
        pages.append(page("/media/my-uploads"))
        pages.append(file_fetch(r["avatar_path"], avatar(r["avatar_path"]), "GET <avatar URL>"))
        used = set(pins)
        wrong = next(f"{n:05d}" for n in range(99999, 0, -1) if f"{n:05d}" not in used)
        # two migrated students of one district sharing a PIN (legacy PINs are unique per session at most)
        shared = None
        for pin, tids in sorted(pins.items()):
            same = sorted(t for t in tids if info[t]["district_id"] is not None)
            districts = {info[t]["district_id"] for t in same}
            if len(same) > 1 and len(districts) < len(same):
                d = next(d for d in districts if sum(info[t]["district_id"] == d for t in same) > 1)
                pair = [t for t in same if info[t]["district_id"] == d]
                shared = {"pin": pin, "district": d, "students": pair,
                          "names": [info[t]["character_name"] for t in pair],
                          "sections": [info[t]["section_id"] for t in pair]}
                break
        subjects.append({
            "who": f"student {tid} (legacy {legacy_of[('students', tid)]})", "kind": "student", "pin": pin_of[tid],
            "student_id": tid, "district": r["district_id"], "wrong_pin": wrong, "pages": pages,
            "shared_pin": shared, "school": r["school_id"],
            "note": f"{len(info)} migrated students, {size[r['district_id']]} in district {r['district_id']}, "
                    f"{size.get(None, 0)} without a district (their teacher has none); students sharing their PIN "
                    f"with another: {sharing(lambda i: 0)} overall, {sharing(lambda i: i['district_id'])} within "
                    f"a district, {sharing(lambda i: (i['district_id'], i['school_id']))} within a school, "
                    f"{sharing(lambda i: i['section_id'])} within a session"})

    out = {"dialect": engine.dialect.name, "checks": checks, "subjects": subjects}
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
    os.chmod(out_path, 0o600)
    conn.close()
    engine.dispose()
    print(f"picked {len(subjects)} subjects -> {out_path}")


# --------------------------------------------------------------------------- export mode: probe
def probe_export(db_url: str, app_dir: str, subjects_path: str) -> None:
    import time
    from urllib.parse import urljoin, urlsplit

    import sqlalchemy as sa
    from markupsafe import escape

    spec = json.load(open(subjects_path, encoding="utf-8"))
    engine = sa.create_engine(db_url)
    before = set(sa.inspect(engine).get_table_names())
    app_module = _import_app(db_url, app_dir)
    after = set(sa.inspect(engine).get_table_names())
    app = app_module.app
    app.config["PROPAGATE_EXCEPTIONS"] = True  # record the exception rather than a 500 page
    print(f"db.create_all() on the exported database added tables: {sorted(after - before) or 'none'}")
    results = [tuple(c) for c in spec["checks"]]

    def exc_note(exc):
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"

    def flashes(html):
        return [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", m)).strip()
                for m in re.findall(r'<div class="alert[^"]*"[^>]*>(.*?)</div>', html, re.S)]

    def csrf(client, url):
        html = client.get(url).get_data(as_text=True)
        m = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html)
        return (m.group(1) if m else ""), html

    img_cache: dict[str, tuple] = {}

    def fetch_file(client, url):
        if url not in img_cache:
            r = client.get(url)
            data = r.get_data()
            img_cache[url] = (r.status_code, r.mimetype, data)
            r.close()
        return img_cache[url]

    def visit(client, p):
        """One page: status, expected strings, the given images byte for byte, every <img>."""
        if "none" in p:
            return "-", p["none"]
        if "file" in p:  # a file URL fetched directly
            status, mimetype, data = fetch_file(client, p["url"])
            same = data == open(p["file"], "rb").read() if p["file"] else None
            return status, f"{mimetype}, {len(data)} bytes" + ("" if same is None else
                                                              "; same bytes as the legacy file" if same else
                                                              "; DIFFERENT bytes from the legacy file")
        r = client.get(p["url"])
        body = r.get_data(as_text=True)
        if r.status_code in (301, 302):
            follow = client.get(r.headers["Location"]).get_data(as_text=True)
            note = f"-> {r.headers['Location']}" + "".join(f"; flash: {f!r}" for f in flashes(follow))
            return r.status_code, note + ("" if r.status_code == p["expect"] else "  [UNEXPECTED]")
        notes = [f"{len(body)} bytes"]
        missing = [m for m in p["must"] if str(escape(m)) not in body and m not in body]
        if p["must"]:
            notes.append(f"{len(p['must']) - len(missing)}/{len(p['must'])} expected texts found"
                         + "".join(f"; MISSING {m!r}" for m in missing))
        for url, src in p["imgs"].items():
            shown = f'src="{escape(url)}"' in body
            status, mimetype, data = fetch_file(client, url)
            same = src and data == open(src, "rb").read()
            notes.append(f"<img {url}>: {'in page' if shown else 'NOT IN PAGE'}, {status} {mimetype}, "
                         f"{'same bytes as the legacy file' if same else 'DIFFERENT bytes'}")
        if p["nav"]:
            m = re.search(re.escape(p["nav"]) + r"(\d+)\)", body)
            notes.append(f"nav {p['nav']}{m.group(1)})" if m else f"nav: no '{p['nav']}…' menu")
        if p["project_images"]:
            shown = [u for u in p["project_images"] if f'src="{u}"' in body]
            notes.append(f"project_images keys shown: {len(shown)}/{len(p['project_images'])}")
        srcs = sorted(set(re.findall(r'<img[^>]*\ssrc="([^"]+)"', body)))
        bad = []
        for src in srcs:
            url = urljoin(p["url"], src)
            if urlsplit(url).netloc:
                continue
            status = fetch_file(client, url)[0]
            if status != 200:
                bad.append(f"{src} -> {url} {status}")
        notes.append(f"<img>: {len(srcs) - len(bad)}/{len(srcs)} answer 200"
                     + (f"; e.g. {bad[0]}" if bad else ""))
        flag = "" if r.status_code == p["expect"] and not missing else "  [UNEXPECTED]"
        return r.status_code, "; ".join(notes) + flag

    def record(who, what, fn):
        started = time.perf_counter()
        try:
            status, note = fn()
        except Exception as exc:  # noqa: BLE001 - the point is to see what fails
            status, note = "EXC", exc_note(exc)
        results.append((who, what, status, note, time.perf_counter() - started))

    def staff_login(client, login, password):
        token, _ = csrf(client, "/login")
        r = client.post("/login", data={"username": login, "password": password, "csrf_token": token})
        if r.status_code == 302:
            return r.status_code, f"-> {r.headers['Location']}"
        text = r.get_data(as_text=True)
        return r.status_code, ("rejected: 'Invalid username or password.'" if "Invalid username or password" in text
                               else "no redirect, no rejection message")

    for s in spec["subjects"]:
        client = app.test_client()
        who = s["who"]
        if s.get("note"):
            results.append((who, "(context)", "-", s["note"], None))
        if s["kind"] == "staff":
            login_shown = s["login"] if len(s["login"]) <= 40 else s["login"][:37] + "..."
            record(who, f"POST /login ({login_shown})", lambda: staff_login(client, s["login"], s["password"]))
            ok = results[-1][2] == 302
            if (s["expect"] == "login") != ok:
                results[-1] = results[-1][:3] + (results[-1][3] + "  [UNEXPECTED]",) + results[-1][4:]
            if not ok:
                continue
        else:  # a student by PIN
            sid = s["student_id"]

            def pin_login(pin, district, expect_id, school=None):
                def go():
                    token, html = csrf(client, "/student/login")
                    if district and f'<option value="{district}"' not in html:
                        return "-", f"district {district} not offered by the form"
                    r = client.post("/student/login", data={"pin": pin, "district_id": str(district or 0),
                                                             "school_id": str(school or 0), "csrf_token": token})
                    with client.session_transaction() as sess:
                        got = sess.get("student_id")
                    if r.status_code == 302:
                        return r.status_code, (f"-> {r.headers['Location']}; logged in as student {got}"
                                               + ("" if got == expect_id else f"  [NOT student {expect_id}]"))
                    text = r.get_data(as_text=True)
                    return r.status_code, ("rejected: 'Invalid student password.'" if "Invalid student password"
                                           in text else "no redirect, no rejection message")
                return go

            def scan_position(district, school=None):
                from models.student import Student  # the app's own model and query

                with app.app_context():
                    q = Student.query
                    if district:
                        q = q.filter(Student.district_id == district)
                    if school:
                        q = q.filter(Student.school_id == school)
                    ids = [x.id for x in q.all()]
                return f"{len(ids)} candidates, this student is #{ids.index(sid) + 1} in the app's scan"

            d = s["district"]
            results.append((who, "(load average)", "-", open("/proc/loadavg").read().strip(), None))
            record(who, f"POST /student/login wrong PIN, district {d}", pin_login(s["wrong_pin"], d, None))
            if s.get("shared_pin"):
                sp = s["shared_pin"]
                other = app.test_client()
                for target, section in zip(sp["students"], sp["sections"]):
                    def shared(target=target):
                        token, _ = csrf(other, "/student/login")
                        r = other.post("/student/login", data={"pin": sp["pin"], "district_id": str(sp["district"]),
                                                               "school_id": "0", "csrf_token": token})
                        with other.session_transaction() as sess:
                            got = sess.get("student_id")
                        other.get("/student/logout")
                        return r.status_code, (f"logged in as student {got}"
                                               + ("" if got == target else f"  [NOT student {target}]"))
                    record(f"student {target} (PIN shared)",
                           f"POST /student/login its PIN, district {sp['district']} (section {section})", shared)
            record(who, "POST /student/login PIN, no district", pin_login(s["pin"], None, sid))
            results.append((who, "(scan, no district)", "-", scan_position(None), None))
            client.get("/student/logout")
            record(who, f"POST /student/login PIN, district {d}", pin_login(s["pin"], d, sid))
            results.append((who, "(scan, district)", "-", scan_position(d), None))
            client.get("/student/logout")
            record(who, f"POST /student/login PIN, district {d} + school {s['school']}",
                   pin_login(s["pin"], d, sid, s["school"]))
            results.append((who, "(scan, district + school)", "-", scan_position(d, s["school"]), None))
        for p in s["pages"]:
            record(who, p["label"], lambda p=p: visit(client, p))

    width = max(len(r[0]) for r in results)
    wwhat = max(len(r[1]) for r in results)
    for who, what, status, note, *t in results:
        took = f"{t[0]:6.2f}s" if t and t[0] is not None else "       "
        print(f"{who:<{width}}  {what:<{wwhat}}  {status!s:<4} {took}  {note}")
    sweep(app, app_module, engine)


def sweep(app, app_module, engine) -> None:
    """Every migrated row through the app's pages, as the user who may see it. The sweep does
    not log in (the logins are probed above): it puts the user's id into the test client's
    session the way Flask-Login and the PIN login do."""
    import time
    from collections import defaultdict

    import sqlalchemy as sa

    with engine.connect() as c:
        q = lambda sql: c.execute(sa.text(sql)).all()  # noqa: E731
        admin = q("SELECT id FROM users WHERE role = 'ADMIN' ORDER BY id LIMIT 1")
        sessions = q("SELECT id, created_by_id FROM sessions ORDER BY id")
        media = q("SELECT m.id, s.created_by_id FROM media m JOIN sessions s ON s.id = m.session_id ORDER BY m.id")
        groups = q("SELECT DISTINCT project_group FROM media WHERE is_project AND project_group IS NOT NULL")
        teachers = q("SELECT id FROM users WHERE role = 'TEACHER' ORDER BY id")
        students = q("SELECT id, teacher_id FROM students ORDER BY id")
        observers = q("SELECT id, district_id FROM users WHERE role = 'OBSERVER' ORDER BY id")
        teacher_district = q("SELECT id, district_id, school_id FROM users WHERE role = 'TEACHER'")
    tally = defaultdict(lambda: defaultdict(list))  # page kind -> outcome -> ids
    started = time.perf_counter()

    def as_user(uid):
        client = app.test_client()
        with client.session_transaction() as sess:
            sess["_user_id"] = str(uid)
            sess["_fresh"] = True
        return client

    def as_student(sid):
        client = app.test_client()
        with client.session_transaction() as sess:
            sess["student_id"] = sid
        return client

    def get(client, kind, url, row):
        try:
            r = client.get(url)
            outcome = str(r.status_code)
            if r.status_code in (301, 302):
                outcome += " -> " + r.headers["Location"]
            r.close()
        except Exception as exc:  # noqa: BLE001
            outcome = f"EXC {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
        tally[kind][outcome].append(row)

    if admin:
        client = as_user(admin[0][0])
        for sid, _ in sessions:
            get(client, "admin: /sessions/<id>", f"/sessions/{sid}", sid)
            get(client, "admin: /sessions/<id>/student", f"/sessions/{sid}/student", sid)
        for mid, _ in media:
            get(client, "admin: /media/<id>", f"/media/{mid}", mid)
        for (g,) in groups:
            get(client, "admin: /media/project/<group>", f"/media/project/{g}", g)
        get(client, "admin: /sessions", "/sessions", "-")
        get(client, "admin: /admin", "/admin", "-")
    by_teacher = defaultdict(list)
    for stid, tid in students:
        by_teacher[tid].append(stid)
    for (tid,) in teachers:
        client = as_user(tid)
        for kind, url in (("teacher: /", "/"), ("teacher: /sessions", "/sessions"), ("teacher: /students", "/students")):
            get(client, kind, url, tid)
        for stid in by_teacher[tid]:
            get(client, "teacher: /students/<id>", f"/students/{stid}", stid)
    for stid, _ in students:
        client = as_student(stid)
        get(client, "student: / (dashboard)", "/", stid)
        get(client, "student: /media/my-uploads", "/media/my-uploads", stid)
    for oid, district in observers:
        client = as_user(oid)
        get(client, "observer: /observer/dashboard", "/observer/dashboard", oid)
        schools = set()
        for tid, tdistrict, school in teacher_district:
            if tdistrict == district and district is not None:
                get(client, "observer: /observer/teachers/<id>", f"/observer/teachers/{tid}", tid)
                schools.add(school)
        for school in sorted(s for s in schools if s is not None):
            get(client, "observer: /observer/schools/<id>", f"/observer/schools/{school}", school)
    pages = sum(len(ids) for outcomes in tally.values() for ids in outcomes.values())
    print(f"sweep: {pages} pages in {time.perf_counter() - started:.0f} s (users put into the session, no login)")
    for kind, outcomes in tally.items():
        for outcome, ids in sorted(outcomes.items(), key=lambda kv: -len(kv[1])):
            shown = ", ".join(map(str, ids[:8])) + (", …" if len(ids) > 8 else "")
            print(f"  {kind:<34} {len(ids):>5}  {outcome}" + ("" if outcome == "200" else f"  [{shown}]"))


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
    elif mode == "pick":
        pick(*args)
    elif mode == "probe-export":
        probe_export(*args)
    else:
        sys.exit(f"unknown mode {mode}")
