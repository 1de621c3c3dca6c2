"""Deterministic generator of a realistic, *dirty* legacy database (``manage.py seed_legacy``).

Everything is driven by ``random.Random`` seeded from ``--seed`` and by a fixed base
timestamp, so the same (scale, seed) always produces byte-identical rows, files and
manifest, whatever the wall clock says.

Rows are written with explicit primary keys (1..N per table, contiguous, orphans
included) through multi-row ``INSERT`` statements (``cursor.executemany`` in batches
of ``BATCH`` rows) inside one transaction, with foreign key checks disabled for the
whole load so that the planted orphans can exist. Timestamp columns are written as
values, so ``auto_now``/``auto_now_add`` never interfere.

The generator knows exactly which rows it made dirty and lists their ids in the
manifest (``anomalies``). Conventions:

- orphan rows (a foreign key pointing at an id >= ``MISSING_ID_BASE`` that does not
  exist) are leaves: nothing references them, their flags/counters are neutral, and
  they appear in no anomaly list except the ``orphan_*`` ones and ``orphan_fk``;
- attribution lists classify *every* non-orphan media with ``student_id`` NULL by its
  ``submitted_password`` against the students of its session and the session
  teacher's ``media_password`` (unique / teacher / ambiguous / unmatched / null);
- ``four_byte_utf8``, ``max_length_rows``, ``over_length_rows``,
  ``empty_string_rows`` and ``invalid_choice_rows`` are exact: no other row has such
  a value (``empty_string_rows`` covers nullable, non-file char/text columns; absent
  files are stored as ``''`` the way Django writes them, except ``media_null_files``).
"""
from __future__ import annotations

import io
import json
import random
import string
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

BATCH = 5000
BASE_TS = datetime(2025, 1, 6, 8, 0, 0)  # naive UTC: what Django stores with USE_TZ
MISSING_ID_BASE = 900_000_000  # ids from here on never exist: targets of orphans
VIDEO_APP_MODELS = [
    "district", "customadmin", "observer", "session", "student", "media",
    "comment", "studentmediainteraction",
]


class SeedError(Exception):
    """A refusal or failure the command reports as one line."""


@dataclass(frozen=True)
class Scale:
    districts: int
    teachers: int  # is_staff rows, superusers included
    observers: int
    students: int
    media: int
    interactions: int
    comments: int
    image_pool: int
    video_pool: int
    plant: int  # how many rows of each planted anomaly (roughly)
    active_choices: tuple
    archived_choices: tuple


_SMALL_SESS = ((1, 1, 2), (0, 0, 1))
_BIG_SESS = ((1, 2, 2, 3, 3, 4), (0, 1, 1, 2))
SCALES = {
    "demo": Scale(3, 8, 6, 70, 100, 150, 110, 10, 4, 1, *_SMALL_SESS),
    "small": Scale(6, 16, 10, 1200, 2400, 4000, 2400, 120, 40, 3, *_SMALL_SESS),
    "medium": Scale(40, 2000, 200, 250_000, 500_000, 2_000_000, 1_000_000, 300, 100, 40, *_BIG_SESS),
    "large": Scale(160, 8000, 800, 1_000_000, 2_000_000, 8_000_000, 4_000_000, 400, 150, 160, *_BIG_SESS),
}

HASHERS = ["pbkdf2_sha256", "pbkdf2_sha1", "argon2", "bcrypt_sha256", "scrypt", "md5"]
# Observer.password is Char(100): a default scrypt hash (~128 chars) cannot be stored,
# argon2 only with a short salt.
OBSERVER_HASHERS = ["pbkdf2_sha256", "pbkdf2_sha1", "argon2", "bcrypt_sha256", "md5"]
# A handful of plaintexts, each hashed once per hasher that uses it (hashing is the slow
# part of a small seed); the hash strings are then shared by many rows.
TEACHER_PLAINTEXTS = {
    "pbkdf2_sha256": ["Summer2024!", "Pässwort-ß9 grafik"], "pbkdf2_sha1": ["Pässwort-ß9 grafik"],
    "argon2": ["Summer2024!"], "bcrypt_sha256": ["Pässwort-ß9 grafik"], "scrypt": ["Summer2024!"],
    "md5": ["Summer2024!", "letmein"],
}
OBSERVER_ARGON2_PLAINTEXT = "district-visit-7"
HOT_PINS = 2  # distinct PINs of the students with a login artefact account

CHARACTERS = {
    "marvel": ["Iron Man", "Spider-Man", "Black Widow", "Thor", "Hulk", "Captain America",
               "Black Panther", "Doctor Strange", "Scarlet Witch", "Ant-Man", "Wasp", "Hawkeye",
               "Falcon", "Groot", "Rocket", "Gamora", "Star-Lord", "Ms. Marvel", "Captain Marvel",
               "Vision", "Loki", "Shuri", "Okoye", "Wolverine", "Storm"],
    "disney": ["Mickey Mouse", "Minnie Mouse", "Donald Duck", "Goofy", "Pluto", "Elsa", "Anna",
               "Olaf", "Moana", "Maui", "Simba", "Nala", "Stitch", "Ariel", "Belle", "Mulan",
               "Rapunzel", "Buzz Lightyear", "Woody", "Dory"],
    "pokemon": ["Pikachu", "Bulbasaur", "Charmander", "Squirtle", "Jigglypuff", "Eevee", "Snorlax",
                "Psyduck", "Meowth", "Togepi", "Mew", "Gengar", "Lucario", "Piplup"],
}
CHARACTER_SETS = ["marvel"] * 6 + ["disney"] * 2 + ["pokemon"] * 2
VARIABLES = [
    "eye_color", "bed_time", "hair_color", "shoe_size", "height_cm", "arm_span", "hours_sleep",
    "screen_time", "favorite_color", "pets_count", "siblings", "commute_minutes", "breakfast",
    "favorite_subject", "birth_month", "hand_span", "reaction_time", "sport", "music_genre",
    "handedness", "travel_mode", "wake_time", "homework_hours", "reading_minutes",
    "water_glasses", "steps_per_day", "favorite_season", "favorite_food", "languages_spoken",
    "house_size", "phone_battery", "backpack_weight", "heart_rate", "jump_distance",
    "memory_score", "typing_speed", "fruit_servings", "social_media_hours", "video_game_hours",
    "allowance",
]
GRAPH_TAGS = ["box", "histogram", "comparison"]
FIRST = ["Maria", "James", "Aisha", "Wei", "Carlos", "Emily", "Noah", "Priya", "Liam", "Fatima",
         "Olivia", "Mateo", "Hannah", "Kenji", "Grace", "Omar", "Sofia", "Ethan", "Chloe", "Diego"]
LAST = ["Garcia", "Smith", "Johnson", "Nguyen", "Patel", "Brown", "Kim", "Lopez", "Miller",
        "Davis", "Wilson", "Martinez", "Anderson", "Taylor", "Thomas", "Moore", "Jackson", "Lee",
        "Harris", "Clark"]
TOWNS = ["Springfield", "Riverside", "Fairview", "Madison", "Georgetown", "Franklin", "Clinton",
         "Salem", "Greenville", "Bristol", "Oakland", "Ashland", "Burlington", "Manchester",
         "Milton", "Newport", "Oxford", "Dover", "Hudson", "Kingston", "Lexington", "Marion",
         "Auburn", "Dayton", "Jackson", "Lebanon", "Monroe", "Winchester", "Arlington", "Chester",
         "Clayton", "Florence", "Harrison", "Jamestown", "Lancaster", "Mount Vernon", "Princeton",
         "Shelby", "Troy", "Waverly"]
DISTRICT_KINDS = ["Unified School District", "Public Schools", "County Schools",
                  "Independent School District"]
SCHOOL_KINDS = ["Middle School", "High School", "Junior High", "STEM Academy"]
MEDIA_WORDS = ["graphs", "boxplot", "median", "stats", "dataset", "chart", "scatter", "survey"]
COMMENTS = ["I like how you labeled the axes.", "Why is the median so high?",
            "Great use of color!", "What does each bar mean?", "I think the scale is off.",
            "Nice comparison between the groups.", "Can you add a title?", "Cool graph!",
            "The outlier is interesting.", "How many people did you ask?",
            "My data looks different.", "This helped me understand the spread.",
            "Is this in hours or minutes?", "Wow, that's a big difference!"]
DESCRIPTIONS = ["Our class survey results.", "We compared two groups.",
                "Made with the class data.", "Look at the spread of the data!",
                "I used a histogram because the data is numeric."]
FOUR_BYTE = " 🎉📊 𝔘"  # U+1F389, U+1F4CA, U+1D518: 4 bytes each in UTF-8
PNG_VARIANTS = 6


_BASE_SECONDS = BASE_TS.hour * 3600 + BASE_TS.minute * 60 + BASE_TS.second
_DAYS: dict[int, str] = {}


def _ts(seconds: int) -> str:
    """BASE_TS + seconds as Django stores a UTC datetime ('YYYY-MM-DD HH:MM:SS')."""
    day, rest = divmod(_BASE_SECONDS + seconds, 86400)
    prefix = _DAYS.get(day)
    if prefix is None:
        prefix = _DAYS[day] = (BASE_TS.date() + timedelta(days=day)).isoformat()
    hour, rest = divmod(rest, 3600)
    minute, second = divmod(rest, 60)
    return f"{prefix} {hour:02d}:{minute:02d}:{second:02d}"


def _fill(prefix: str, length: int, sep: str = " ") -> str:
    """``prefix`` padded to exactly ``length`` characters."""
    return (prefix + sep + "x" * length)[:length]


# --------------------------------------------------------------------------- db helpers

def model_tables() -> dict[str, object]:
    from django.apps import apps

    app = apps.get_app_config("video_app")
    return {m._meta.model_name: m for m in app.get_models()}


def all_app_tables() -> list[str]:
    from django.apps import apps

    app = apps.get_app_config("video_app")
    return [m._meta.db_table for m in app.get_models(include_auto_created=True)]


def check_schema(connection) -> None:
    if connection.vendor not in ("sqlite", "mysql"):
        raise SeedError(f"seed_legacy supports SQLite and MySQL/MariaDB legacy databases, "
                        f"not {connection.vendor}")
    present = set(connection.introspection.table_names())
    missing = [t for t in all_app_tables() if t not in present]
    if missing:
        raise SeedError(f"legacy schema not migrated (missing {', '.join(missing)}): "
                        f"run `manage.py migrate` first")


def existing_rows(connection) -> int:
    total = 0
    with connection.cursor() as cur:
        for table in all_app_tables():
            cur.execute(f"SELECT COUNT(*) FROM {connection.ops.quote_name(table)}")
            total += cur.fetchone()[0]
    return total


def flush(connection) -> None:
    """Delete every video_app row (and admin log entries pointing at its users)."""
    q = connection.ops.quote_name
    tables = all_app_tables()
    if "django_admin_log" in connection.introspection.table_names():
        tables = ["django_admin_log", *tables]
    with connection.constraint_checks_disabled():
        with connection.cursor() as cur:
            for table in tables:
                if connection.vendor == "mysql":
                    cur.execute(f"TRUNCATE TABLE {q(table)}")
                else:
                    cur.execute(f"DELETE FROM {q(table)}")
            if connection.vendor == "sqlite":
                marks = ",".join(["%s"] * len(tables))
                cur.execute(f"DELETE FROM sqlite_sequence WHERE name IN ({marks})", tables)


def default_manifest_path(connection) -> Path:
    from django.conf import settings

    name = connection.settings_dict["NAME"]
    if connection.vendor == "sqlite":
        return Path(f"{name}.seed.json")
    return Path(settings.BASE_DIR) / "var" / f"seed_{name}.json"


def table_counts(connection) -> dict[str, int]:
    models = model_tables()
    counts = {}
    with connection.cursor() as cur:
        for key in VIDEO_APP_MODELS:
            cur.execute(f"SELECT COUNT(*) FROM {connection.ops.quote_name(models[key]._meta.db_table)}")
            counts[key] = cur.fetchone()[0]
    return counts


COLUMNS = {
    "district": ["id", "name", "code", "created_at", "is_active"],
    "customadmin": ["id", "password", "last_login", "is_superuser", "username", "first_name",
                    "last_name", "email", "is_staff", "is_active", "date_joined", "school",
                    "district_id", "media_password", "profile_picture"],
    "observer": ["id", "name", "password", "district_id", "email", "created_at", "is_active",
                 "created_by_id"],
    "session": ["id", "name", "original_name", "session_code", "section", "module", "created_at",
                "is_paused", "created_by_id", "character_set", "is_archived", "archived_at"],
    "student": ["id", "name", "password", "section_id", "admin_id", "device_id",
                "character_description", "avatar_image_path"],
    "media": ["id", "session_id", "title", "description", "media_type", "video_file",
              "image_file", "uploaded_at", "graph_likes", "eye_likes", "read_likes", "graph_tag",
              "is_graph", "variable_tag", "submitted_password", "student_id",
              "posted_by_admin_id", "project_group", "project_images", "is_project"],
    "studentmediainteraction": ["id", "student_id", "media_id", "liked_graph", "liked_eye",
                                "liked_read", "comment_count", "created_at", "updated_at"],
    "comment": ["id", "media_id", "parent_id", "text", "created_at", "updated_at", "name",
                "device_id", "is_admin", "student_id", "admin_avatar"],
}


class Writer:
    """Buffers rows per table and writes them with multi-row INSERTs."""

    def __init__(self, connection, batch: int = BATCH):
        self.connection = connection
        self.batch = batch
        self.buffers: dict[str, list] = {}
        self.sql: dict[str, str] = {}
        self.written: dict[str, int] = {}
        q = connection.ops.quote_name
        models = model_tables()
        for key, cols in COLUMNS.items():
            model = models[key]
            actual = {f.column for f in model._meta.concrete_fields}
            if actual != set(cols):
                raise SeedError(f"{model._meta.db_table}: schema differs from the seeder "
                                f"({sorted(actual ^ set(cols))})")
            self.sql[key] = (f"INSERT INTO {q(model._meta.db_table)} ({', '.join(q(c) for c in cols)}) "
                             f"VALUES ({', '.join(['%s'] * len(cols))})")
            self.buffers[key] = []
            self.written[key] = 0

    def add(self, table: str, row: tuple) -> None:
        buf = self.buffers[table]
        buf.append(row)
        if len(buf) >= self.batch:
            self.flush(table)

    def flush(self, table: str) -> None:
        buf = self.buffers[table]
        if buf:
            with self.connection.cursor() as cur:
                cur.executemany(self.sql[table], buf)
            self.written[table] += len(buf)
            buf.clear()

    def flush_all(self) -> None:
        for table in self.buffers:
            self.flush(table)


# --------------------------------------------------------------------------- files

def _png_bytes(rng: random.Random, fmt: str = "PNG") -> bytes:
    from PIL import Image, ImageDraw

    w, h = rng.choice([(64, 48), (80, 60), (96, 72)])
    img = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    bars = rng.randint(3, 7)
    bw = w // (bars + 1)
    colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
    for i in range(bars):
        top = rng.randint(4, h - 4)
        draw.rectangle([4 + i * bw, top, 4 + i * bw + bw - 2, h - 2], fill=colour)
    draw.line([2, h - 2, w - 2, h - 2], fill=(0, 0, 0))
    out = io.BytesIO()
    img.save(out, format=fmt, **({"quality": 80} if fmt == "JPEG" else {}))
    return out.getvalue()


def _mp4_bytes(rng: random.Random) -> bytes:
    """A tiny MP4-looking file: ftyp box (isom), free box, mdat box of noise."""
    def box(kind: bytes, body: bytes) -> bytes:
        return (len(body) + 8).to_bytes(4, "big") + kind + body

    payload = bytes(rng.getrandbits(8) for _ in range(rng.randint(256, 2048)))
    ftyp = box(b"ftyp", b"isom" + (0x200).to_bytes(4, "big") + b"isomiso2avc1mp41")
    return ftyp + box(b"free", b"") + box(b"mdat", payload)


def _write_file(storage, name: str, data: bytes) -> None:
    from django.core.files.base import ContentFile

    if storage.exists(name):
        storage.delete(name)
    saved = storage.save(name, ContentFile(data))
    if saved != name:
        raise SeedError(f"storage saved {name!r} as {saved!r}")


# --------------------------------------------------------------------------- generator

class _Teacher:
    __slots__ = ("id", "district_id", "media_password", "last_name", "is_superuser")

    def __init__(self, id, district_id, media_password, last_name, is_superuser):
        self.id, self.district_id, self.media_password = id, district_id, media_password
        self.last_name, self.is_superuser = last_name, is_superuser


class _Session:
    __slots__ = ("id", "teacher", "admin_id", "section", "archived", "created", "name",
                 "original_name", "module", "code", "paused", "charset", "archived_at")


class Seeder:
    def __init__(self, scale: str, seed: int, connection, log=print):
        if scale not in SCALES:
            raise SeedError(f"unknown scale {scale!r}")
        self.scale_name, self.seed, self.connection, self.log = scale, seed, connection, log
        self.sc = SCALES[scale]
        self.rng = random.Random(seed)
        self.salt_rng = random.Random(f"{seed}:salts")
        self.file_rng = random.Random(f"{seed}:files")
        self.vendor = connection.vendor
        self.sqlite = self.vendor == "sqlite"
        self.native_uuid = connection.features.has_native_uuid_field
        self.w = Writer(connection)
        self.next_id = {k: 1 for k in COLUMNS}
        a = self.anom = {}
        for name in ["orphan_students", "orphan_media", "orphan_comments", "orphan_interactions",
                     "orphan_observers", "duplicate_active_sessions", "sessions_null_created_by",
                     "teachers_without_district", "superusers", "login_artifact_users",
                     "attribution_unique", "attribution_teacher", "attribution_ambiguous",
                     "attribution_unmatched", "attribution_null", "duplicate_pins_in_session",
                     "drifted_counter_media", "drifted_comment_count_interactions",
                     "replies_before_parent", "missing_files", "media_with_missing_files",
                     "media_null_files", "project_media", "project_images_missing",
                     "shared_file_media", "repeated_pins_across_sessions"]:
            a[name] = []
        for name in ["orphan_fk", "four_byte_utf8", "max_length_rows", "over_length_rows",
                     "invalid_choice_rows", "empty_string_rows"]:
            a[name] = {}
        self.passwords = {"customadmin": [], "observer": []}
        self.media_passwords: dict[str, str | None] = {}
        self.files: dict[str, bytes] = {}  # storage name -> content, written at the end
        self.artefacts = []  # (student_id, pin, login seconds)
        self.normal_students = []  # one (student id) per session, for orphan interactions

    # ---- small helpers
    def nid(self, table: str) -> int:
        i = self.next_id[table]
        self.next_id[table] = i + 1
        return i

    def mark(self, kind: str, table: str, row_id: int) -> None:
        self.anom[kind].setdefault(table, []).append(row_id)

    def orphan_fk(self, column: str, row_id: int) -> None:
        self.anom["orphan_fk"].setdefault(column, []).append(row_id)

    def around(self, mean: float, low: int) -> int:
        return max(low, int(mean * (0.6 + 0.8 * self.rng.random()) + 0.5))

    def uuid(self) -> str:
        u = uuid.UUID(int=self.rng.getrandbits(128), version=4)
        return str(u) if self.native_uuid else u.hex

    def device(self) -> str:
        return "%032x" % self.rng.getrandbits(128)

    # ---- passwords
    def _salt(self, n: int) -> str:
        chars = string.ascii_letters + string.digits
        return "".join(self.salt_rng.choice(chars) for _ in range(n))

    def _hash(self, hasher: str, plaintext: str, short_salt: bool = False) -> str:
        from django.contrib.auth.hashers import get_hasher, make_password

        if hasher == "bcrypt_sha256":
            chars = "./" + string.ascii_letters + string.digits
            salt = ("$2b$%02d$" % get_hasher(hasher).rounds
                    + "".join(self.salt_rng.choice(chars) for _ in range(21))
                    + self.salt_rng.choice(".Oeu")).encode()
            return make_password(plaintext, salt, hasher)
        return make_password(plaintext, self._salt(8 if short_salt else 22), hasher)

    def unusable(self) -> str:
        from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX

        return UNUSABLE_PASSWORD_PREFIX + self._salt(40)

    def make_password_pools(self) -> None:
        self.teacher_pool = {h: [(p, self._hash(h, p)) for p in TEACHER_PLAINTEXTS[h]] for h in HASHERS}
        self.observer_pool = {}
        for h in OBSERVER_HASHERS:
            if h == "argon2":
                p = OBSERVER_ARGON2_PLAINTEXT
                self.observer_pool[h] = [(p, self._hash(h, p, short_salt=True))]
            else:  # reuse the teacher hash strings
                self.observer_pool[h] = self.teacher_pool[h]
            assert all(len(enc) <= 100 for _, enc in self.observer_pool[h]), h
        self.hot_pins = []
        while len(self.hot_pins) < HOT_PINS:
            pin = "%05d" % self.rng.randrange(100000)
            if pin not in self.hot_pins:
                self.hot_pins.append(pin)
        self.hot_hash = {pin: self._hash("pbkdf2_sha256", pin) for pin in self.hot_pins}
        self.repeat_pin = "%05d" % self.rng.randrange(100000)
        while self.repeat_pin in self.hot_pins:
            self.repeat_pin = "%05d" % self.rng.randrange(100000)

    def pick_password(self, kinds: list[str], pool: dict, forced: str | None):
        hasher = forced or (kinds[0] if self.rng.random() < 0.5 else self.rng.choice(kinds + ["unusable"]))
        if hasher == "unusable":
            return hasher, None, self.unusable()
        plaintext, encoded = self.rng.choice(pool[hasher])
        return hasher, plaintext, encoded

    # ---- districts, teachers, observers
    def make_districts(self) -> None:
        self.district_ids = []
        for i in range(self.sc.districts):
            did = self.nid("district")
            town = TOWNS[i % len(TOWNS)]
            name = f"{town} {DISTRICT_KINDS[(i // len(TOWNS)) % len(DISTRICT_KINDS)]}"
            self.w.add("district", (did, name, f"D{i + 1:04d}", _ts(-86400 * 400 + i * 3600),
                                    self.rng.random() > 0.1 or i == 0))
            self.district_ids.append(did)

    def make_teachers(self) -> None:
        rng = self.rng
        n = self.sc.teachers
        self.teachers: list[_Teacher] = []
        kinds = HASHERS + ["unusable"]
        # planted teacher anomalies on regular teachers (ids >= 3)
        regular = list(range(3, n + 1))
        pick = rng.sample(regular, min(len(regular), 3 + max(1, n // 20)))
        four_byte, max_len, empty = pick[0], pick[1], pick[2]
        no_district = set(pick[3:])
        for i in range(1, n + 1):
            tid = self.nid("customadmin")
            assert tid == i
            superuser = i <= 2
            first, last = rng.choice(FIRST), rng.choice(LAST)
            username = "admin" if i == 1 else f"{first[0]}{last}{i}".lower()
            district = None if (i == 1 or i in no_district) else rng.choice(self.district_ids)
            media_pw = None
            if i == 3 or rng.random() < 0.9:
                media_pw = f"{rng.choice(MEDIA_WORDS)}{rng.randint(10, 99)}"
            school = f"{rng.choice(TOWNS)} {rng.choice(SCHOOL_KINDS)}" if rng.random() < 0.85 else None
            if i == four_byte:
                first = "Zoë" + FOUR_BYTE
                self.mark("four_byte_utf8", "customadmin", tid)
            if i == max_len:
                username = _fill(f"t{i}_{last.lower()}", 150, "_")
                self.mark("max_length_rows", "customadmin", tid)
            if i == empty:
                school = ""
                self.mark("empty_string_rows", "customadmin", tid)
            forced = kinds[(i - 1) % len(kinds)] if i <= len(kinds) else None
            hasher, plaintext, encoded = self.pick_password(HASHERS, self.teacher_pool, forced)
            joined = -86400 * 300 + rng.randint(0, 86400 * 200)
            last_login = _ts(joined + rng.randint(3600, 86400 * 90)) if rng.random() < 0.85 else None
            profile = None
            if rng.random() < 0.1:
                profile = f"video_app/images/avatars/avatar{rng.randint(1, 12)}.png"
            self.w.add("customadmin", (
                tid, encoded, last_login, superuser, username, first, last,
                f"{username[:60]}@schools.example.org", True, rng.random() > 0.05 or superuser,
                _ts(joined), school, district, media_pw, profile))
            self.teachers.append(_Teacher(tid, district, media_pw, last, superuser))
            self.passwords["customadmin"].append(
                {"id": tid, "username": username, "hasher": hasher, "plaintext": plaintext})
            self.media_passwords[str(tid)] = media_pw
            if district is None:
                self.anom["teachers_without_district"].append(tid)
            if superuser:
                self.anom["superusers"].append(tid)
        self.session_teachers = [t for t in self.teachers if not t.is_superuser]

    def make_observers(self) -> None:
        rng, k = self.rng, self.sc.plant
        kinds = OBSERVER_HASHERS + ["unusable"]
        four_byte = set(rng.sample(range(1, self.sc.observers + 1), min(self.sc.observers, k)))
        for i in range(1, self.sc.observers + 1):
            oid = self.nid("observer")
            forced = kinds[(i - 1) % len(kinds)] if i <= len(kinds) else None
            hasher, plaintext, encoded = self.pick_password(OBSERVER_HASHERS, self.observer_pool, forced)
            name = f"Dr. {rng.choice(FIRST)} {rng.choice(LAST)}"
            if oid in four_byte:
                name += FOUR_BYTE
                self.mark("four_byte_utf8", "observer", oid)
            email = f"observer{oid}@district.example.org"
            created_by = rng.choice(self.teachers).id if rng.random() < 0.8 else None
            self.w.add("observer", (oid, name, encoded, rng.choice(self.district_ids), email,
                                    _ts(-86400 * 200 + rng.randint(0, 86400 * 100)),
                                    rng.random() > 0.1, created_by))
            self.passwords["observer"].append(
                {"id": oid, "email": email, "hasher": hasher, "plaintext": plaintext})
        for j in range(max(1, k)):  # orphans: district gone
            oid = self.nid("observer")
            hasher, plaintext, encoded = self.pick_password(OBSERVER_HASHERS, self.observer_pool, None)
            email = f"observer{oid}@gone.example.org"
            self.w.add("observer", (oid, f"Former Observer {j + 1}", encoded, MISSING_ID_BASE + j,
                                    email, _ts(-86400 * 250), False, None))
            self.passwords["observer"].append(
                {"id": oid, "email": email, "hasher": hasher, "plaintext": plaintext})
            self.anom["orphan_observers"].append(oid)
            self.orphan_fk("observer.district_id", oid)

    # ---- sessions
    def make_sessions(self) -> None:
        rng, k = self.rng, self.sc.plant
        specs = []

        def spec(teacher, section, archived, created):
            s = _Session()
            s.teacher, s.section, s.archived, s.created = teacher, section, archived, created
            s.admin_id = teacher.id if teacher else rng.choice(self.session_teachers).id
            return s

        by_teacher_active = {}
        for t in self.session_teachers:
            n_active = rng.choice(self.sc.active_choices)
            n_archived = rng.choice(self.sc.archived_choices)
            sections = rng.sample(range(0, 9), n_active)
            by_teacher_active[t.id] = sections
            for sec in sections:
                specs.append(spec(t, sec, False, rng.randint(0, 86400 * 150)))
            for _ in range(n_archived):
                specs.append(spec(t, rng.randint(0, 8), True, rng.randint(0, 86400 * 100)))
        # planted: duplicate active sessions for one (teacher, section)
        dup_teachers = rng.sample(self.session_teachers, min(len(self.session_teachers), max(1, k)))
        for t in dup_teachers:
            specs.append(spec(t, rng.choice(by_teacher_active[t.id]), False,
                              rng.randint(86400 * 10, 86400 * 160)))
        # planted: created_by NULL (the teacher was deleted)
        for _ in range(max(1, k)):
            specs.append(spec(None, rng.randint(0, 8), rng.random() < 0.3, rng.randint(0, 86400 * 150)))
        specs.sort(key=lambda s: s.created)
        codes = set()
        for s in specs:
            s.id = self.nid("session")
            while True:
                code = "%08X" % rng.getrandbits(32)
                if code not in codes:
                    codes.add(code)
                    break
            s.code = code
            label = rng.choice(["Period", "Period", "Block", "Hour"])
            s.name = f"{label} {s.section}"
            s.original_name = None
            s.module = "4" if rng.random() < 0.75 else "2"
            s.paused = rng.random() < 0.05
            s.charset = rng.choice(CHARACTER_SETS)
            s.archived_at = None
            if s.archived:
                s.archived_at = s.created + rng.randint(86400 * 20, 86400 * 120)
                day = (BASE_TS + timedelta(seconds=s.archived_at)).strftime("%Y-%m-%d")
                s.original_name, s.name = s.name, f"{s.name} (Archived {day})"
        active = [s for s in specs if not s.archived]
        picks = rng.sample(active, min(len(active), 4 * max(1, k)))
        per = max(1, len(picks) // 4)
        for s in picks[:per]:
            s.name = f"Period {s.section}{FOUR_BYTE}"
            self.mark("four_byte_utf8", "session", s.id)
        for s in picks[per:2 * per]:
            s.name = _fill(f"Period {s.section} combined statistics", 100)
            self.mark("max_length_rows", "session", s.id)
        for s in picks[2 * per:3 * per]:
            s.module = "3"
            self.mark("invalid_choice_rows", "session", s.id)
        for s in picks[3 * per:4 * per]:
            s.original_name = ""
            self.mark("empty_string_rows", "session", s.id)
        groups = {}
        for s in specs:
            if s.teacher is None:
                self.anom["sessions_null_created_by"].append(s.id)
            elif not s.archived:
                groups.setdefault((s.teacher.id, s.section), []).append(s.id)
        for (tid, sec), ids in groups.items():
            if len(ids) > 1:
                self.anom["duplicate_active_sessions"].append(
                    {"teacher_id": tid, "section": sec, "session_ids": sorted(ids)})
        self.anom["duplicate_active_sessions"].sort(key=lambda d: (d["teacher_id"], d["section"]))
        for s in specs:
            self.w.add("session", (
                s.id, s.name, s.original_name, s.code, s.section, s.module, _ts(s.created),
                s.paused, s.teacher.id if s.teacher else None, s.charset, s.archived,
                _ts(s.archived_at) if s.archived_at is not None else None))
        self.sessions = specs

    # ---- files
    def make_file_pool(self) -> None:
        frng = self.file_rng
        self.image_pool, self.video_pool = [], []
        for i in range(self.sc.image_pool):
            ext = "jpg" if i % 3 == 2 else "png"
            name = f"images/{frng.choice(VARIABLES)}_{frng.getrandbits(24):06x}.{ext}"
            if name in self.files:
                continue
            self.files[name] = _png_bytes(frng, "JPEG" if ext == "jpg" else "PNG")
            self.image_pool.append(name)
        for i in range(self.sc.video_pool):
            name = f"videos/{frng.choice(VARIABLES)}_clip_{frng.getrandbits(24):06x}.mp4"
            if name in self.files:
                continue
            self.files[name] = _mp4_bytes(frng)
            self.video_pool.append(name)
        self.shared_file = f"images/shared_class_graph_{frng.getrandbits(24):06x}.png"
        self.files[self.shared_file] = _png_bytes(frng)
        self.project_pngs = [_png_bytes(frng) for _ in range(PNG_VARIANTS)]

    # ---- planting schedule: session id -> list of plant kinds
    def plan(self) -> None:
        rng, k = self.rng, self.sc.plant
        sessions = self.sessions
        plants: dict[int, list[str]] = {}

        def put(kind, n, pool=None, distinct=False):
            pool = pool if pool is not None else sessions
            chosen = rng.sample(pool, min(n, len(pool))) if distinct else [rng.choice(pool) for _ in range(n)]
            for s in chosen:
                plants.setdefault(s.id, []).append(kind)

        k1 = max(1, k)
        k2 = max(2, k)
        n_artefacts = max(3, self.sc.students // 800)
        put("repeat_pin", k2, distinct=True)
        put("artefact", n_artefacts, distinct=True)
        put("pin_collision", max(1, k // 4), distinct=True)
        put("attr_unique", k2)
        put("attr_teacher", k2, pool=[s for s in sessions if s.teacher and s.teacher.media_password])
        put("attr_unmatched", k2)
        put("attr_null", k2)
        put("drift_counter", 2 * k1)
        put("drift_comment", 2 * k1)
        put("reply_before_parent", k2, distinct=True)
        put("orphan_student_admin", k1)
        for kind in ["student_4byte", "student_maxlen", "student_overlen", "student_empty",
                     "media_4byte", "media_maxlen", "media_overlen", "media_empty", "media_invalid",
                     "media_missing_image", "media_missing_video", "media_null_files",
                     "comment_4byte", "comment_maxlen", "comment_empty"]:
            put(kind, k1)
        put("project", 2 * k1 + 1)
        put("project_missing", k1)
        put("shared_file", max(3, k1))
        self.plants = plants

    # ---- one session's students, media, interactions, comments
    def gen_session(self, s: _Session) -> None:
        rng, sc = self.rng, self.sc
        plants = self.plants.get(s.id, [])
        n_sessions = len(self.sessions)
        taken: set[str] = set()
        chars = CHARACTERS[s.charset]
        # student record: [id, pin, name, device, role]; role: 'normal' | 'passive' | 'orphan'
        students: list[list] = []
        admin_id = s.admin_id

        def new_pin():
            while True:
                pin = "%05d" % rng.randrange(100000)
                if pin not in taken:
                    taken.add(pin)
                    return pin

        def add_student(pin, role="normal", name=None, device=None, desc=None, avatar=None,
                        admin=None, plain=True):
            sid = self.nid("student")
            ch = rng.choice(chars)
            if name is None:
                name = ch
            if plain:
                device = self.device() if rng.random() < 0.7 else None
                desc = f"{ch} who loves data" if rng.random() < 0.3 else None
                r = rng.random()
                if r < 0.7:
                    slug = ch.lower().replace(" ", "").replace("-", "").replace(".", "")
                    avatar = f"video_app/images/characters/{s.charset}/{slug}.png"
                elif r < 0.9:
                    avatar = f"video_app/images/avatars/avatar{rng.randint(1, 12)}.png"
            self.w.add("student", (sid, name, pin, s.id, admin if admin is not None else admin_id,
                                   device, desc, avatar))
            rec = [sid, pin, name, device, role]
            students.append(rec)
            return rec

        collision_pins = []
        for kind in plants:
            if kind == "repeat_pin" and self.repeat_pin not in taken:
                taken.add(self.repeat_pin)
                rec = add_student(self.repeat_pin)
                self.anom["repeated_pins_across_sessions"].append(rec[0])
            elif kind == "artefact":
                free = [p for p in self.hot_pins if p not in taken]
                if free:
                    pin = rng.choice(free)
                    taken.add(pin)
                    rec = add_student(pin)
                    self.artefacts.append((rec[0], pin, s.created + rng.randint(3600, 86400 * 30)))
            elif kind == "pin_collision":
                pin = new_pin()
                a = add_student(pin)
                b = add_student(pin)
                collision_pins.append(pin)
                self.anom["duplicate_pins_in_session"].append(
                    {"session_id": s.id, "pin": pin, "student_ids": [a[0], b[0]]})
            elif kind == "student_4byte":
                rec = add_student(new_pin(), "passive", name=rng.choice(chars) + FOUR_BYTE)
                self.mark("four_byte_utf8", "student", rec[0])
            elif kind == "student_maxlen":
                rec = add_student(new_pin(), "passive", name=_fill(rng.choice(chars), 100))
                self.mark("max_length_rows", "student", rec[0])
            elif kind == "student_overlen":
                # SQLite keeps 120 characters; MariaDB (strict) could not store them, so the
                # same row is written at exactly the column length there.
                name = _fill(rng.choice(chars) + " the Magnificent", 120 if self.sqlite else 100)
                rec = add_student(new_pin(), "passive", name=name)
                self.mark("over_length_rows" if self.sqlite else "max_length_rows", "student", rec[0])
            elif kind == "student_empty":
                rec = add_student(new_pin(), "passive", device="", desc=None, avatar="", plain=False)
                self.mark("empty_string_rows", "student", rec[0])
            elif kind == "orphan_student_admin":
                j = len(self.anom["orphan_students"])
                rec = add_student(new_pin(), "orphan", admin=MISSING_ID_BASE + j)
                self.anom["orphan_students"].append(rec[0])
                self.orphan_fk("student.admin_id", rec[0])
        for _ in range(self.around(sc.students / n_sessions, 3)):
            add_student(new_pin())

        members = [st for st in students if st[4] != "orphan"]
        posters = [st for st in students if st[4] == "normal"]
        self.normal_students.append(posters[0][0])
        pin_owners: dict[str, list[int]] = {}
        for st in members:
            pin_owners.setdefault(st[1], []).append(st[0])

        # ---- media. record: [id, title, desc, type, video, image, uploaded, g, e, r, gtag,
        #      is_graph, vtag, submitted, student_id, posted_by, group, images, is_project]
        media: list[list] = []
        teacher = s.teacher

        def add_media(poster="random", submitted=None, mtype=None, posted_by=None):
            mid = self.nid("media")
            if poster == "random":
                poster = rng.choice(posters)
            if mtype is None:
                r = rng.random()
                mtype = "image" if r < 0.55 else ("video" if r < 0.85 else "comment")
            var = rng.choice(VARIABLES) if rng.random() < 0.9 else None
            gtag = rng.choice(GRAPH_TAGS) if rng.random() < 0.7 else None
            title = f"{(var or 'my data').replace('_', ' ').title()} {gtag or 'graph'}"
            desc = rng.choice(DESCRIPTIONS) if rng.random() < 0.6 else None
            video = image = ""
            if mtype == "image":
                image = rng.choice(self.image_pool)
            elif mtype == "video":
                video = rng.choice(self.video_pool)
            if poster is not None:
                submitted = poster[1]
            rec = [mid, title, desc, mtype, video, image,
                   s.created + rng.randint(600, 86400 * 30), 0, 0, 0, gtag,
                   mtype != "comment" and gtag is not None, var, submitted,
                   poster[0] if poster is not None else None, posted_by, None, None, False]
            media.append(rec)
            return rec

        drift_media = []
        for kind in plants:
            if kind == "attr_unique":
                cands = [st for st in members if st[1] not in collision_pins]
                add_media(poster=None, submitted=rng.choice(cands)[1])
            elif kind == "attr_teacher":
                add_media(poster=None, submitted=teacher.media_password)
            elif kind == "pin_collision":
                add_media(poster=None, submitted=collision_pins[0])
            elif kind == "attr_unmatched":
                add_media(poster=None, submitted=new_pin())
            elif kind == "attr_null":
                add_media(poster=None, submitted=None)
            elif kind == "drift_counter":
                drift_media.append(add_media())
            elif kind == "media_4byte":
                m = add_media()
                m[1] = m[1] + FOUR_BYTE
                self.mark("four_byte_utf8", "media", m[0])
            elif kind == "media_maxlen":
                m = add_media()
                m[1] = _fill(m[1] + " for the whole class", 100)
                self.mark("max_length_rows", "media", m[0])
            elif kind == "media_overlen":
                m = add_media()
                m[1] = _fill(m[1] + " with a very long title", 130 if self.sqlite else 100)
                self.mark("over_length_rows" if self.sqlite else "max_length_rows", "media", m[0])
            elif kind == "media_empty":
                m = add_media()
                m[2] = ""
                self.mark("empty_string_rows", "media", m[0])
            elif kind == "media_invalid":
                m = add_media(mtype="image")
                m[3] = "gif"
                self.mark("invalid_choice_rows", "media", m[0])
            elif kind == "media_missing_image":
                m = add_media(mtype="image")
                m[5] = f"images/missing_{self.file_rng.getrandbits(32):08x}.png"
                self.anom["missing_files"].append(m[5])
                self.anom["media_with_missing_files"].append(m[0])
            elif kind == "media_missing_video":
                m = add_media(mtype="video")
                m[4] = f"videos/missing_{self.file_rng.getrandbits(32):08x}.mp4"
                self.anom["missing_files"].append(m[4])
                self.anom["media_with_missing_files"].append(m[0])
            elif kind == "media_null_files":
                m = add_media(mtype="comment")
                m[4] = m[5] = None
                self.anom["media_null_files"].append(m[0])
            elif kind in ("project", "project_missing"):
                group = self.uuid()
                for n_member in range(1 if kind == "project_missing" or rng.random() < 0.6 else 2):
                    m = add_media(mtype="image")
                    urls = []
                    for x in range(rng.randint(1, 3)):
                        name = f"images/project_{m[0]}_{self.file_rng.getrandbits(32):08x}.png"
                        url = "/media/" + name
                        if kind == "project_missing" and x == 0:
                            self.anom["project_images_missing"].append(url)
                        else:
                            self.files[name] = self.project_pngs[self.file_rng.randrange(PNG_VARIANTS)]
                        urls.append(url)
                    m[16], m[17], m[18] = group, json.dumps(urls), True
                    m[11] = True
                    self.anom["project_media"].append(m[0])
            elif kind == "shared_file":
                m = add_media(mtype="image")
                m[5] = self.shared_file
                self.anom["shared_file_media"].append(m[0])
        for _ in range(self.around(sc.media / n_sessions, 2)):
            if teacher is not None and teacher.media_password and rng.random() < 0.01:
                add_media(poster=None, submitted=teacher.media_password, posted_by=teacher.id)
            else:
                add_media()

        # ---- interactions and the students' comments
        n_media = len(media)
        mean_inter = sc.interactions / sc.students
        comment_rate = 0.9 * sc.comments / sc.interactions
        p1, p2 = comment_rate * 0.8, comment_rate * 0.9
        inters: list[list] = []
        comments: list[list] = []  # [time, seq, media_idx, student_id, name, device, is_admin, avatar, text]
        rand, randint = rng.random, rng.randint
        for st in members:
            sid, role = st[0], st[4]
            kk = min(n_media, int(rand() * 2 * mean_inter + 0.5))
            if kk <= 0:
                continue
            for mi in rng.sample(range(n_media), kk):
                m = media[mi]
                if m[14] == sid:
                    continue
                lg, le, lr = rand() < 0.45, rand() < 0.3, rand() < 0.3
                if lg:
                    m[7] += 1
                if le:
                    m[8] += 1
                if lr:
                    m[9] += 1
                c = 0
                if role == "normal":
                    x = rand()
                    c = 1 if x < p1 else (2 if x < p2 else 0)
                created = m[6] + randint(60, 86400 * 3)
                updated = created
                for _ in range(c):
                    t = created + randint(0, 86400 * 2)
                    comments.append([t, len(comments), mi, sid, st[2], st[3], False, None,
                                     rng.choice(COMMENTS)])
                    updated = max(updated, t)
                if rand() < 0.2:
                    updated += randint(1, 86400)
                inters.append([self.nid("studentmediainteraction"), sid, m[0], lg, le, lr, c,
                               created, updated])
        n_extra = int(len(comments) * 0.12 + rand() * 1.5)
        for _ in range(n_extra):
            self._staff_comment(comments, media, teacher)

        # ---- comment ids, replies
        for kind in plants:  # make sure the comment plants have something to work on
            if kind.startswith("comment_") or kind == "reply_before_parent":
                if not comments:
                    self._staff_comment(comments, media, teacher)
        comments.sort(key=lambda c: (c[0], c[1]))
        # final record: [id, media_idx, parent_rec, text, time, updated, name, device, admin, student, avatar]
        recs = []
        by_media: dict[int, list] = {}
        for c in comments:
            rec = [self.nid("comment"), c[2], None, c[8], c[0], c[0], c[4], c[5], c[6], c[3], c[7]]
            prev = by_media.setdefault(c[2], [])
            if prev and rand() < 0.3:
                rec[2] = prev[randint(0, len(prev) - 1)]
            if rand() < 0.05:
                rec[5] = rec[4] + randint(60, 86400)
            prev.append(rec)
            recs.append(rec)
        for kind in plants:
            if kind == "comment_4byte":
                rec = rng.choice(recs)
                rec[3] = rec[3] + FOUR_BYTE
                self.mark("four_byte_utf8", "comment", rec[0])
            elif kind == "comment_maxlen":
                rec = rng.choice(recs)
                rec[6] = _fill(rec[6] + " and friends", 100)
                self.mark("max_length_rows", "comment", rec[0])
            elif kind == "comment_empty":
                rec = rng.choice(recs)
                rec[7] = ""
                self.mark("empty_string_rows", "comment", rec[0])
            elif kind == "reply_before_parent":
                replies = [r for r in recs if r[2] is not None]
                if not replies:
                    parent = rng.choice(recs)
                    t = parent[4] + randint(60, 86400)
                    reply = [self.nid("comment"), parent[1], parent, rng.choice(COMMENTS), t, t,
                             "Guest", self.device(), False, None, None]
                    recs.append(reply)
                    replies = [reply]
                reply = rng.choice(replies)
                parent = reply[2]
                if reply[0] > parent[0]:  # a re-import swapped their ids
                    reply[0], parent[0] = parent[0], reply[0]
        for rec in recs:
            if rec[2] is not None and rec[0] < rec[2][0]:
                self.anom["replies_before_parent"].append(rec[0])
        # ---- planted drift of comment_count
        for kind in plants:
            if kind == "drift_comment":
                if not inters:
                    st = posters[0]
                    m = next((m for m in media if m[14] != st[0]), media[0])
                    t = m[6] + 3600
                    inters.append([self.nid("studentmediainteraction"), st[0], m[0], False, False,
                                   False, 0, t, t])
                it = rng.choice(inters)
                if it[0] in self.anom["drifted_comment_count_interactions"]:
                    continue
                it[6] = it[6] + rng.randint(1, 3) if (it[6] == 0 or rand() < 0.5) else it[6] - 1
                self.anom["drifted_comment_count_interactions"].append(it[0])

        # ---- planted drift of the cached like counters
        for m in drift_media:
            col = rng.choice([7, 8, 9])
            m[col] = m[col] - 1 if (m[col] > 0 and rand() < 0.5) else m[col] + rng.randint(1, 3)
            self.anom["drifted_counter_media"].append(m[0])

        # ---- attribution of media without student, by the rule
        for m in media:
            if m[14] is not None:
                continue
            sp = m[13]
            if sp is None:
                self.anom["attribution_null"].append(m[0])
            elif teacher is not None and teacher.media_password == sp:
                self.anom["attribution_teacher"].append([m[0], teacher.id])
            else:
                owners = pin_owners.get(sp, [])
                if len(owners) == 1:
                    self.anom["attribution_unique"].append([m[0], owners[0]])
                elif owners:
                    self.anom["attribution_ambiguous"].append(m[0])
                else:
                    self.anom["attribution_unmatched"].append(m[0])

        # ---- emit
        add = self.w.add
        for m in media:
            add("media", (m[0], s.id, m[1], m[2], m[3], m[4], m[5], _ts(m[6]), m[7], m[8], m[9],
                          m[10], m[11], m[12], m[13], m[14], m[15], m[16], m[17], m[18]))
        for it in inters:
            add("studentmediainteraction", (it[0], it[1], it[2], it[3], it[4], it[5], it[6],
                                            _ts(it[7]), _ts(it[8])))
        for r in recs:
            add("comment", (r[0], media[r[1]][0], r[2][0] if r[2] is not None else None, r[3],
                            _ts(r[4]), _ts(r[5]), r[6], r[7], r[8], r[9], r[10]))

    def _staff_comment(self, comments, media, teacher) -> None:
        rng = self.rng
        mi = rng.randrange(len(media))
        t = media[mi][6] + rng.randint(60, 86400 * 5)
        if teacher is not None and rng.random() < 0.6:
            avatar = f"video_app/images/avatars/teacher{rng.randint(1, 4)}.png"
            comments.append([t, len(comments), mi, None, f"Teacher {teacher.last_name}", None, True,
                             avatar, rng.choice(COMMENTS)])
        else:
            comments.append([t, len(comments), mi, None, f"Guest {rng.randint(1, 99)}",
                             self.device() if rng.random() < 0.5 else None, False, None,
                             rng.choice(COMMENTS)])

    # ---- after the sessions
    def make_artefacts(self) -> None:
        for sid, pin, login in self.artefacts:
            uid = self.nid("customadmin")
            username = f"student_{sid}"
            self.w.add("customadmin", (uid, self.hot_hash[pin], _ts(login), False, username,
                                       None, None, "", False, True, _ts(login), None, None, None,
                                       None))
            self.anom["login_artifact_users"].append(uid)
            self.passwords["customadmin"].append(
                {"id": uid, "username": username, "hasher": "pbkdf2_sha256", "plaintext": pin})

    def make_orphans(self) -> None:
        rng, k1 = self.rng, max(1, self.sc.plant)
        n_media = self.next_id["media"] - 1  # non-orphan media ids are 1..n_media
        n_teachers = self.sc.teachers
        base = MISSING_ID_BASE + 1000
        for j in range(k1):  # students whose session is gone
            sid = self.nid("student")
            self.w.add("student", (sid, rng.choice(CHARACTERS["marvel"]), "%05d" % rng.randrange(100000),
                                   base + j, rng.randint(3, n_teachers), None, None, None))
            self.anom["orphan_students"].append(sid)
            self.orphan_fk("student.section_id", sid)
        for j in range(k1):
            for column, session_id, student_id in (
                    ("media.session_id", base + j, None),
                    ("media.student_id", rng.choice(self.sessions).id, base + j)):
                mid = self.nid("media")
                self.w.add("media", (mid, session_id, "Lost graph", None, "image", "",
                                     rng.choice(self.image_pool), _ts(rng.randint(0, 86400 * 150)),
                                     0, 0, 0, None, False, None,
                                     "%05d" % rng.randrange(100000) if student_id else None,
                                     student_id, None, None, None, False))
                self.anom["orphan_media"].append(mid)
                self.orphan_fk(column, mid)
            for column, media_id, parent_id, student_id in (
                    ("comment.media_id", base + j, None, None),
                    ("comment.parent_id", rng.randint(1, n_media), base + j, None),
                    ("comment.student_id", rng.randint(1, n_media), None, base + j)):
                cid = self.nid("comment")
                t = _ts(rng.randint(0, 86400 * 150))
                self.w.add("comment", (cid, media_id, parent_id, rng.choice(COMMENTS), t, t,
                                       "Guest", None, False, student_id, None))
                self.anom["orphan_comments"].append(cid)
                self.orphan_fk(column, cid)
            for column, student_id, media_id in (
                    ("studentmediainteraction.student_id", base + j, rng.randint(1, n_media)),
                    ("studentmediainteraction.media_id", rng.choice(self.normal_students), base + j)):
                iid = self.nid("studentmediainteraction")
                t = _ts(rng.randint(0, 86400 * 150))
                self.w.add("studentmediainteraction", (iid, student_id, media_id, False, False,
                                                       False, 0, t, t))
                self.anom["orphan_interactions"].append(iid)
                self.orphan_fk(column, iid)

    def write_files(self, storage) -> int:
        for name in self.anom["missing_files"]:
            if storage.exists(name):
                storage.delete(name)
        for url in self.anom["project_images_missing"]:
            name = url[len("/media/"):]
            if storage.exists(name):
                storage.delete(name)
        for name, data in self.files.items():
            _write_file(storage, name, data)
        return len(self.files)

    # ---- the whole run
    def run(self) -> dict:
        from django.core.files.storage import default_storage
        from django.db import transaction

        t0 = time.monotonic()
        self.make_password_pools()
        with self.connection.constraint_checks_disabled():
            with transaction.atomic(using=self.connection.alias):
                self.make_districts()
                self.make_teachers()
                self.make_observers()
                self.make_sessions()
                self.make_file_pool()
                self.plan()
                for s in self.sessions:
                    self.gen_session(s)
                self.make_artefacts()
                self.make_orphans()
                self.w.flush_all()
                self.write_files(default_storage)
        counts = table_counts(self.connection)
        expected = {k: self.next_id[k] - 1 for k in VIDEO_APP_MODELS}
        if counts != expected:
            raise SeedError(f"row counts {counts} differ from the generated {expected}")
        self.elapsed = time.monotonic() - t0
        return self.manifest(counts)

    def manifest(self, counts: dict) -> dict:
        def tidy(value):
            if isinstance(value, dict):
                return {k: tidy(v) for k, v in sorted(value.items())}
            if value and isinstance(value[0], (int, str)):
                return sorted(set(value))
            if value and isinstance(value[0], list):
                return sorted(value)
            return value

        anomalies = {k: tidy(v) for k, v in self.anom.items()}
        anomalies["duplicate_active_sessions"] = self.anom["duplicate_active_sessions"]
        anomalies["duplicate_pins_in_session"] = sorted(
            self.anom["duplicate_pins_in_session"], key=lambda d: d["session_id"])
        return {
            "scale": self.scale_name,
            "seed": self.seed,
            "vendor": self.vendor,
            "base_timestamp": BASE_TS.isoformat() + "Z",
            "counts": counts,
            "anomalies": anomalies,
            "passwords": {
                "customadmin": sorted(self.passwords["customadmin"], key=lambda d: d["id"]),
                "observer": sorted(self.passwords["observer"], key=lambda d: d["id"]),
            },
            "media_passwords": self.media_passwords,
            "files": {"written": sorted(self.files), "shared": self.shared_file},
        }


def seed_legacy(scale: str, seed: int, connection, *, do_flush: bool = False, log=print):
    """Check, optionally flush, seed; return (manifest, elapsed seconds)."""
    check_schema(connection)
    rows = existing_rows(connection)
    if rows and not do_flush:
        raise SeedError(f"legacy database is not empty ({rows} rows in video_app tables); "
                        f"re-run with --flush to delete them first")
    if rows:
        flush(connection)
    seeder = Seeder(scale, seed, connection, log=log)
    manifest = seeder.run()
    return manifest, seeder.elapsed
