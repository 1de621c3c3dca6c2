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
