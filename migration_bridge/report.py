"""The run's report: ``report.json`` (counts, timings, notes aggregated) and
``rejects.ndjson`` (one line per rejected or skipped row, with its reason), built from
the bookkeeping tables so that a resumed run reports on the whole migration."""
from __future__ import annotations

import csv
import datetime as dt
import decimal
import json
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import sqlalchemy as sa

from . import bookkeeping as bk
from .dialects import mask_url
from .transforms import Root

DECISION_IDS = 50  # ids listed per decision in report.json
# password outcomes whose users cannot log in until an admin resets them (must_reset.csv)
MUST_RESET_OUTCOMES = ("must_reset", "inactive")


def reports_base(conf) -> Path:
    """Where reports go: MIGRATION_BRIDGE['REPORT_DIR'], else <BASE_DIR>/var/reports."""
    from django.conf import settings

    return Path(conf.REPORT_DIR or Path(str(getattr(settings, "BASE_DIR", "."))) / "var" / "reports")


def stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%S.%fZ")


def jsonable(value):
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, (uuid.UUID, decimal.Decimal)):
        return str(value)
    return value


def run_header(tool: str, source, options, started: dt.datetime, finished: dt.datetime) -> dict:
    """What every report starts with: which command, when, from where to where, how."""
    return {
        "tool": tool,
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
        "seconds": round((finished - started).total_seconds(), 3),
        "source": {"vendor": source.vendor, "app_label": source.app.label},
        "target": mask_url(options.target_url),
        "options": options.public(),
    }


def _reason_kind(reason: str) -> str:
    """'section_id: sessions id 7 was rejected' -> 'section_id: was rejected'."""
    column, _, rest = reason.partition(": ")
    for phrase in ("was rejected", "not found", "never loaded", "characters", "invalid value", "NULL",
                   "NUL character", "invalid JSON", "not a list"):
        if phrase in rest:
            return f"{column}: {phrase}"
    return reason


def write_report(engine: sa.Engine, report_dir: Path, header: dict, entities: list, order: tuple[str, ...],
                 extra: dict | None = None) -> tuple[dict, Path, Path]:
    report_dir.mkdir(parents=True, exist_ok=True)
    rejects_path = report_dir / "rejects.ndjson"
    passwords: dict = defaultdict(lambda: defaultdict(Counter))
    attributions: dict = defaultdict(list)
    archived = []
    reject_kinds: dict = defaultdict(Counter)
    skip_reasons: dict = defaultdict(Counter)
    causes = RootCauses()
    decisions: dict = defaultdict(dict)
    must_reset: list[dict] = []
    decisions_path = report_dir / "decisions.csv"
    with engine.connect() as conn, rejects_path.open("w", encoding="utf-8") as rejects, \
            decisions_path.open("w", newline="", encoding="utf-8") as decisions_file:
        decision_rows = csv.writer(decisions_file)
        decision_rows.writerow(["entity", "legacy_id", "kind", "detail"])
        rows = conn.execution_options(stream_results=True, yield_per=10_000).execute(
            sa.select(bk.notes).order_by(bk.notes.c.entity, bk.notes.c.source_id, bk.notes.c.kind))
        for note in rows:
            detail = note.detail or {}
            if note.kind in ("reject", "skip"):
                root = detail.get("root") or {"entity": note.entity, "id": note.source_id,
                                              "reason": ("skipped: " if note.kind == "skip" else "")
                                              + detail.get("reason", "")}
                causes.add(note.entity, Root(root["entity"], root["id"], root["reason"]))
                rejects.write(json.dumps({
                    "entity": note.entity, "id": note.source_id, "outcome": {"reject": "rejected", "skip": "skipped"}[note.kind],
                    "reason": detail.get("reason"), "root": root, "row": detail.get("row"),
                }, ensure_ascii=False) + "\n")
                if note.kind == "reject":
                    reject_kinds[note.entity][_reason_kind(detail.get("reason", ""))] += 1
                else:
                    skip_reasons[note.entity][detail.get("reason", "")] += 1
            elif note.kind == "password":
                passwords[note.entity][detail["hasher"]][detail["outcome"]] += 1
            elif note.kind == "attribution":
                attributions[detail["kind"]].append({"media_id": note.source_id, **{
                    k: v for k, v in detail.items() if k != "kind" and v is not None}})
            elif note.kind == "archived_duplicate":
                archived.append({"session_id": note.source_id, **detail})
            else:  # a profile's own decision (synthesized e-mail, role, ...): counted by its detail
                decision = decisions[note.entity].setdefault(note.kind, {"count": 0, "by": Counter(), "ids": []})
                decision["count"] += 1
                decision["by"][", ".join(f"{k}={v}" for k, v in sorted(detail.items()) if k != "login") or "-"] += 1
                if len(decision["ids"]) < DECISION_IDS:
                    decision["ids"].append(note.source_id)
                decision_rows.writerow([note.entity, note.source_id, note.kind,
                                        json.dumps(detail, ensure_ascii=False, sort_keys=True)])
            if note.kind == "password" and detail.get("outcome") in MUST_RESET_OUTCOMES:
                must_reset.append({"entity": note.entity, "legacy_id": note.source_id,
                                   "login": detail.get("login"), "why": detail["outcome"],
                                   "hasher": detail.get("hasher")})
    report = {
        **header,
        "entities": {
            e.name: {
                "read": e.read, "written": e.written, "rejected": e.rejected, "skipped": e.skipped,
                "seconds": round(e.seconds, 3), "rows_per_s": round(e.rows_per_s, 1), "complete": e.done,
            }
            for e in entities
        },
        "totals": {
            key: sum(getattr(e, key) for e in entities) for key in ("read", "written", "rejected", "skipped")
        },
        "passwords": {ent: {h: dict(c) for h, c in by_hasher.items()} for ent, by_hasher in passwords.items()},
        "attributions": {kind: items for kind, items in sorted(attributions.items())},
        "archived_duplicate_sessions": archived,
        "rejects": {ent: dict(c) for ent, c in reject_kinds.items()},
        # each source row that caused rejects or skips, with every row it took along
        "root_causes": causes.as_list(order),
        "skipped": {ent: dict(c) for ent, c in skip_reasons.items()},
        # every other decision a profile takes per row, counted (the first ids listed; all of
        # them, one per line, in decisions.csv)
        "decisions_file": str(decisions_path),
        "decisions": {ent: {kind: {**d, "by": dict(d["by"])} for kind, d in sorted(kinds.items())}
                      for ent, kinds in decisions.items()},
        "must_reset": {"count": len(must_reset), "file": str(report_dir / "must_reset.csv") if must_reset else None},
        "rejects_file": str(rejects_path),
        **(extra or {}),
    }
    if must_reset:
        _write_csv(report_dir / "must_reset.csv", ["entity", "legacy_id", "login", "why", "hasher"],
                   ([m[k] for k in ("entity", "legacy_id", "login", "why", "hasher")] for m in must_reset))
    report_path = report_dir / "report.json"
    report_path.write_text(json.dumps(jsonable(report), indent=2, ensure_ascii=False), encoding="utf-8")
    return report, report_path, rejects_path


def _write_csv(path: Path, header: list[str], rows) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


class RootCauses:
    """Rejected and skipped rows grouped by the source row that caused them: what a user
    fixes first, and how many rows each fix brings along."""

    def __init__(self):
        self._rows: dict[tuple, Counter] = defaultdict(Counter)
        self._reasons: dict[tuple, str] = {}

    def add(self, entity: str, root) -> None:
        """One row of ``entity`` rejected or skipped because of ``root`` (itself, for a root)."""
        key = (root.entity, root.id)
        self._reasons[key] = root.reason
        self._rows[key][entity] += 1

    def as_list(self, order) -> list[dict]:
        items = [{"root": {"entity": e, "id": i, "reason": self._reasons[(e, i)]},
                  "rows": {name: rows[name] for name in order if rows[name]}, "total": sum(rows.values())}
                 for (e, i), rows in self._rows.items()]
        items.sort(key=lambda item: (-item["total"], item["root"]["entity"], item["root"]["id"]))
        return items


def root_cause_lines(causes: list[dict], limit: int = 20) -> list[str]:
    """'sessions#17 (module: invalid value '3' …): 1 sessions → 34 students, 87 media'."""
    lines = []
    for item in causes[:limit]:
        root, rows = item["root"], dict(item["rows"])
        own = rows.pop(root["entity"], 0)
        took = ", ".join(f"{n} {name}" for name, n in rows.items())
        lines.append(f"{root['entity']}#{root['id']} ({root['reason']}): {own} {root['entity']}"
                     + (f" → {took}" if took else ""))
    if len(causes) > limit:
        lines.append(f"… and {len(causes) - limit} more root causes")
    return lines


def sync_table(stats: list) -> str:
    """The terminal table of a --sync run."""
    head = (f"{'entity':<28}{'compared':>10}{'inserted':>10}{'updated':>10}{'deleted':>10}{'unchanged':>11}"
            f"{'rejected':>10}{'seconds':>9}")
    lines = [head, "-" * len(head)]
    for s in stats:
        compared = "all" if s.logged is None else f"{s.logged}"  # a number: the rows the change log names
        lines.append(f"{s.name:<28}{compared:>10}{s.inserted:>10}{s.updated:>10}{s.deleted:>10}{s.unchanged:>11}"
                     f"{s.rejected:>10}{s.seconds:>9.1f}")
    return "\n".join(lines)


def summary_table(entities: list) -> str:
    """The closing table printed on the terminal."""
    head = f"{'entity':<28}{'read':>10}{'written':>10}{'rejected':>10}{'skipped':>9}{'seconds':>9}{'rows/s':>10}"
    lines = [head, "-" * len(head)]
    for e in entities:
        lines.append(f"{e.name:<28}{e.read:>10}{e.written:>10}{e.rejected:>10}{e.skipped:>9}"
                     f"{e.seconds:>9.1f}{e.rows_per_s:>10.0f}")
    total_read = sum(e.read for e in entities)
    total_seconds = sum(e.seconds for e in entities)
    lines.append("-" * len(head))
    lines.append(f"{'total':<28}{total_read:>10}{sum(e.written for e in entities):>10}"
                 f"{sum(e.rejected for e in entities):>10}{sum(e.skipped for e in entities):>9}"
                 f"{total_seconds:>9.1f}{(total_read / total_seconds if total_seconds else 0):>10.0f}")
    return "\n".join(lines)
