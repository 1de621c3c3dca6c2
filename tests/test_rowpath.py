"""The row path's decisions that need no database: replies waiting for their parent."""
import datetime as dt

import pytest

from migration_bridge.fingerprint import context_digest, row_digest
from migration_bridge.idset import IdSet
from migration_bridge.profiles import get_profile
from migration_bridge.rowpath import WAIT, RowPath
from migration_bridge.transforms import Reject, Root, TransformContext, Transformed

COMMENTS = get_profile("plan").entity("comments")
NOW = dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc)


def path_with(loaded_comments=(), gone=None) -> RowPath:
    path = RowPath(source=None, ctx=None, urls=None, fingerprint_key=b"")
    path.loaded = {"comments": IdSet(loaded_comments), "media": IdSet([1]), "students": IdSet()}
    path.gone = {"comments": dict(gone or {})}
    return path


def reply(i, parent):
    return Transformed({"id": i, "media_id": 1, "parent_id": parent, "text": "t", "is_admin": False, "name": "n",
                        "created_at": NOW, "updated_at": NOW})


def wait(path, i, parent):
    assert path.decide(COMMENTS, {"id": i}, reply(i, parent)) == WAIT


def test_a_chain_of_replies_takes_the_root_of_the_rejected_head():
    root = Root("comments", 20, "text: contains a NUL character")
    path = path_with()
    wait(path, 15, 20)   # 20 comes later in id order
    wait(path, 16, 15)   # 15 is waiting itself
    path.gone["comments"][20] = root   # then 20 is rejected
    assert path.ready(COMMENTS) == []
    out = path.never_ready(COMMENTS)
    assert out[15] == Reject("parent_id: comments id 20 was rejected", root=root)
    assert out[16] == Reject("parent_id: comments id 15 was rejected", root=root)


def test_a_chain_whose_head_is_nowhere_is_rooted_at_the_first_reply():
    path = path_with()
    wait(path, 15, 900)
    wait(path, 16, 15)
    out = path.never_ready(COMMENTS)
    assert out[15].reason.startswith("parent_id: comments id 900 never loaded") and out[15].root is None
    assert out[16] == Reject("parent_id: comments id 15 was rejected",
                             root=Root("comments", 15, out[15].reason))


def test_a_cycle_never_loads_and_a_loaded_parent_releases_its_replies():
    path = path_with()
    wait(path, 15, 16)
    wait(path, 16, 15)
    assert set(path.never_ready(COMMENTS)) == {15, 16}
    path = path_with()
    wait(path, 15, 20)
    path.accept(COMMENTS, 20)
    assert path.ready(COMMENTS) == [15] and not path.pending["comments"]


def test_a_row_worker_makes_a_reply_wait_for_a_parent_below_its_range_only():
    path = path_with(loaded_comments=[3])
    path.range_start = 10   # this worker reads ids 11 and up
    wait(path, 12, 7)   # 7 may be in another worker's range
    assert path.decide(COMMENTS, {"id": 13}, reply(13, 3)) is None   # loaded before the workers started
    missing = path.decide(COMMENTS, {"id": 14}, reply(14, 11))   # in its own range and not read: missing
    assert missing == Reject("parent_id: comments id 11 not found (missing in the source)")
    path.range_start = None   # one process: a parent earlier in id order was read already
    assert path.decide(COMMENTS, {"id": 15}, reply(15, 7)).reason.startswith("parent_id: comments id 7 not found")


def test_a_row_finds_a_parent_of_its_own_table_decided_earlier_in_its_batch():
    """Ids are accepted a batch at a time only where no row looks up its own table: a
    self-reference declared as an ordinary foreign key is looked up row by row too, and
    one batch decides as two do."""
    import dataclasses

    declared = dataclasses.replace(COMMENTS, self_foreign_key=None,
                                   foreign_keys={**COMMENTS.foreign_keys, "parent_id": "comments"},
                                   transform=lambda src, ctx: Transformed(dict(src)), contexts=(), files=())
    rows = [{**reply(i, parent).row, "student_id": None} for i, parent in ((1, None), (2, 1))]
    for batches in ([rows], [rows[:1], rows[1:]]):
        path = path_with()
        path.fingerprint = lambda *args: {}
        accepted = [r["id"] for batch in batches for r in path.process(declared, [dict(r) for r in batch], None).rows]
        assert accepted == [1, 2]


@pytest.mark.parametrize("profile", ["plan", "datadeckv2"])
def test_a_rows_fingerprint_is_its_digest_and_its_contexts_digest_over_the_whole_row(profile):
    """What a sync compares, for every entity: a database-digested row (secrets set or
    empty) and a derived one (no database digest: keyed over all its values), each with
    its contexts giving it something or nothing."""
    key = b"k" * 64
    path = RowPath(source=None, ctx=None, urls=None, fingerprint_key=key)
    for entity in get_profile(profile).entities:
        for secret in ("", "1234", None):
            for database_digest in (987_654_321, None):
                for given in (None, "x"):
                    src = {f: (secret if f in entity.secret_fields else f"v-{f}") for f in entity.source_fields}
                    src["id"] = 7
                    ctx = TransformContext(**{c.field: ({7: given} if given else {}) for c in entity.contexts})
                    assert path.fingerprint(entity, src, database_digest, ctx) == {
                        "entity": entity.name, "source_id": 7,
                        "row_digest": row_digest(key, 7, database_digest,
                                                 tuple(src[f] for f in entity.secret_fields), tuple(src.values())),
                        "context_digest": context_digest(key, tuple(getattr(ctx, c.field).get(7)
                                                                    for c in entity.contexts)),
                    }, (entity.name, secret, database_digest, given)
