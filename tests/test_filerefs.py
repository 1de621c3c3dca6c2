"""The one file rule (filerefs): which source values name files, and what the target
holds instead. Pure: no database, no storage."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from migration_bridge import filerefs
from migration_bridge.mapping import Entity, FileColumn
from migration_bridge.profiles import get_profile

URLS = filerefs.FileUrls(source_prefix="/media/", target_base="https://cdn.example.org/m/")
IMAGE = FileColumn("image_file", "image_file")
PROJECT = FileColumn("project_images", "project_images", "url_list", "url")
PICTURE = FileColumn("profile_picture", "profile_picture", "url", "url", names_key=False)
NAMES = st.text(alphabet="abcdefghij_-.0123456789/", min_size=1, max_size=40).filter(lambda s: not s.startswith("/"))


@given(name=NAMES)
def test_media_url_round_trip(name):
    assert filerefs.storage_name_from_url("/media/" + name) == name
    url = filerefs.target_value(PROJECT, ["/media/" + name], lambda n: n, URLS)[0]
    assert url == "https://cdn.example.org/m/" + name
    assert filerefs.keys_in_target(PROJECT, [url], URLS) == ([name], 0)


def test_what_is_not_a_media_url_is_kept():
    entries = ["/media/images/project_7_0a1b2c3d.png", "https://elsewhere/x.png", 42]
    assert filerefs.target_value(PROJECT, entries, lambda n: n, URLS) == [
        "https://cdn.example.org/m/images/project_7_0a1b2c3d.png", "https://elsewhere/x.png", 42]
    assert filerefs.target_value(PROJECT, None, lambda n: n, URLS) is None
    assert filerefs.target_value(PICTURE, "video_app/images/avatars/a.png", lambda n: n, URLS) == \
        "video_app/images/avatars/a.png"
    assert filerefs.keys_in_target(PROJECT, ["https://elsewhere/x.png"], URLS) == ([], 1)


@pytest.mark.parametrize("value,expected", [("images/a.png", "K:images/a.png"), ("", ""), (None, None)])
def test_a_name_column_becomes_its_key(value, expected):
    assert filerefs.target_value(IMAGE, value, lambda n: "K:" + n, URLS) == expected


def test_refs_and_file_columns_of_a_row_agree():
    entity = Entity("things", "Thing", get_profile("plan").entity("media").target, ("id",),
                    files=(IMAGE, PROJECT))
    row = {"id": 7, "image_file": "images/a.png", "project_images": ["/media/images/b.png", "https://x/y.png"]}
    refs = filerefs.refs_of(entity, row, URLS)
    assert [(r.field, r.name) for r in refs] == [("image_file", "images/a.png"),
                                                 ("project_images[0]", "images/b.png")]
    keys = {"images/a.png": "k/a", "images/b.png": "k/b"}
    assert filerefs.file_columns(entity, row, keys.get, URLS) == {
        "image_file": "k/a", "project_images": ["https://cdn.example.org/m/k/b", "https://x/y.png"]}


# --- static paths (source_form="static"): files of the legacy app's static folders ----------

AVATAR = FileColumn("avatar_image_path", "avatar_path", "static", "url", names_key=False)
UPLOADS = filerefs.FileUrls(source_prefix="/media/", target_base="/static/uploads/")


def test_a_static_path_is_a_name_in_the_static_namespace():
    path = "video_app/images/avatars/avatar3.png"
    assert filerefs.static_name(path) == "legacy-static/" + path
    assert filerefs.static_path(filerefs.static_name(path)) == path
    assert filerefs.static_path("images/a.png") is None  # a media name
    entity = Entity("students", "Student", get_profile("plan").entity("students").target, ("id",), files=(AVATAR,))
    refs = filerefs.refs_of(entity, {"id": 4, "avatar_image_path": path}, UPLOADS)
    assert refs == [filerefs.FileRef("students", 4, "avatar_image_path", "legacy-static/" + path, False)]


@pytest.mark.parametrize("value", ["https://cdn.example.org/a.png", "/static/video_app/a.png", "/video_app/a.png",
                                   "", None])
def test_urls_and_empty_values_are_no_static_files(value):
    assert filerefs.static_name(value) is None
    entity = Entity("students", "Student", get_profile("plan").entity("students").target, ("id",), files=(AVATAR,))
    assert filerefs.refs_of(entity, {"id": 4, "avatar_image_path": value}, UPLOADS) == []
    assert filerefs.target_value(AVATAR, value, lambda n: "K:" + n, UPLOADS) == value


@given(parts=st.lists(st.text(alphabet="abcdefghij_-.0123456789", min_size=1, max_size=12), min_size=1, max_size=4))
def test_a_static_file_is_served_from_the_uploads_folder(parts):
    path = "/".join(parts)
    url = filerefs.target_value(AVATAR, path, lambda n: n, UPLOADS)  # preserve: the key is the name
    assert url == "/static/uploads/legacy-static/" + path
    assert filerefs.keys_in_target(AVATAR, url, UPLOADS) == (["legacy-static/" + path], 0)


def test_a_kept_url_is_external_whatever_the_target_form():
    assert filerefs.keys_in_target(AVATAR, "https://cdn.example.org/a.png", UPLOADS) == ([], 1)
    as_key = FileColumn("avatar_image_path", "avatar_path", "static", "key")
    assert filerefs.target_value(as_key, "video_app/a.png", lambda n: n, UPLOADS) == "legacy-static/video_app/a.png"
    assert filerefs.keys_in_target(as_key, "legacy-static/video_app/a.png", UPLOADS) == (
        ["legacy-static/video_app/a.png"], 0)
    assert filerefs.keys_in_target(as_key, "/static/a.png", UPLOADS) == ([], 1)
    assert filerefs.keys_in_target(as_key, None, UPLOADS) == ([], 0)
