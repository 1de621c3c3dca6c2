"""The bridge's only table in the legacy database: the read-only freeze flag.

One row (pk 1). It lives in the database so that every web worker and host sees
the same flag; see ``migration_bridge.freeze`` for how it is read and cached.
"""
from django.db import models


class LegacyFreeze(models.Model):
    SINGLETON_PK = 1

    id = models.PositiveSmallIntegerField(primary_key=True, default=SINGLETON_PK, editable=False)
    frozen = models.BooleanField(
        "read-only freeze on", default=False,
        help_text="While on, the legacy app refuses every write (HTTP 503, and a database guard).",
    )
    message = models.CharField(
        max_length=500, blank=True,
        help_text="Shown to visitors and in the admin banner while the freeze is on.",
    )
    changed_by = models.CharField(max_length=150, blank=True)
    since = models.DateTimeField(null=True, blank=True, help_text="When the current freeze began.")
    changed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "read-only freeze"
        verbose_name_plural = "read-only freeze"

    def __str__(self):
        return "read-only freeze: " + ("ON" if self.frozen else "off")
