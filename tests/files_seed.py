"""A small legacy data set for the file tests (tests/test_files.py), made through the ORM.

Every file case of legacy_schema.md, with known answers: unique files, one file shared
by three media rows, a video, a project with extra images (one missing, one external
URL), a missing image, media rows the row export rejects (one whose file is missing, one
whose file exists), teachers' profile pictures (a media file, a missing one, a static
path). Run in-process (pytest-django) or in a subprocess:
``manage.py shell -c "from tests.files_seed import seed; seed('<media root>')"``.
"""
from __future__ import annotations

import json
import os
import random

from django.apps import apps


def legacy(name):
    return apps.get_model("video_app", name)


def _write(media_root: str, name: str, size: int, rng: random.Random) -> None:
    path = os.path.join(media_root, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(rng.randbytes(size))


def seed(media_root: str, images: int = 12, image_size: int = 40_000, video_size: int = 300_000,
         seed_value: int = 7) -> dict:
    """Create the rows and files; returns the expected outcome (also printed as JSON)."""
    rng = random.Random(seed_value)
    District, Session, Student, Media = (legacy(n) for n in ("District", "Session", "Student", "Media"))
    User = legacy("CustomAdmin")

    district = District.objects.create(name="North", code="N")
    teacher = User.objects.create(username="teacher1", district=district, is_staff=True,
                                  profile_picture="/media/profiles/teacher1.png", password="!unusable")
    User.objects.create(username="teacher2", district=district, is_staff=True,
                        profile_picture="/media/profiles/gone.png", password="!unusable")
    User.objects.create(username="teacher3", district=district, is_staff=True,
                        profile_picture="video_app/images/avatars/avatar3.png", password="!unusable")
    _write(media_root, "profiles/teacher1.png", 5_000, rng)
    session = Session.objects.create(name="Period 1", session_code="AAAA0001", section=1, created_by=teacher)
    student = Student.objects.create(name="Iron Man", password="12345", section=session, admin=teacher)

    def media(**kw):
        kw.setdefault("media_type", "image")
        return Media.objects.create(session=session, title=kw.pop("title", "graph"), student=student, **kw).id

    expected = {"unique": [], "shared": "images/shared.png", "shared_ids": [], "video": "videos/clip.mp4"}
    for i in range(images):
        name = f"images/img_{i:03d}.png"
        _write(media_root, name, image_size + rng.randrange(image_size), rng)
        expected["unique"].append([media(image_file=name), name])
    _write(media_root, "images/shared.png", image_size, rng)
    expected["shared_ids"] = [media(image_file="images/shared.png") for _ in range(3)]
    _write(media_root, "videos/clip.mp4", video_size, rng)
    expected["video_id"] = media(media_type="video", video_file="videos/clip.mp4")
    for name in ("images/p0.png", "images/p1.png"):
        _write(media_root, name, image_size, rng)
    expected["project_id"] = media(image_file="images/p0.png", is_project=True, project_images=[
        "/media/images/p1.png", "/media/images/p_missing.png", "https://elsewhere.example/x.png"])
    expected["missing_id"] = media(image_file="images/missing.png")
    media(media_type="comment", title="no file")
    # rejected by the row export (media_type outside the choices): their files are not needed
    expected["rejected_missing_id"] = media(media_type="audio", image_file="images/only_rejected_missing.png")
    _write(media_root, "images/rejected_only.png", image_size, rng)
    expected["rejected_present_id"] = media(media_type="audio", image_file="images/rejected_only.png")
    expected["teacher_id"] = teacher.id
    expected["missing"] = sorted(["images/missing.png", "images/p_missing.png", "profiles/gone.png"])
    expected["present"] = sorted(
        [n for _, n in expected["unique"]]
        + ["images/shared.png", "videos/clip.mp4", "images/p0.png", "images/p1.png", "profiles/teacher1.png",
           "images/rejected_only.png"])
    print(json.dumps(expected))
    return expected
