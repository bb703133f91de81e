from django.db import models

# The table is created by bench/intake.py (CREATE TABLE IF NOT EXISTS), so the app
# needs no migration for it.
CEILING_TABLE_SQL = """
CREATE TABLE IF NOT EXISTS bench_ceiling_hit (
    id bigserial PRIMARY KEY,
    event_id varchar(24) NOT NULL,
    created_at timestamptz NOT NULL
)
"""


class CeilingHit(models.Model):
    """One row per ceiling request: the least a write endpoint can do."""

    event_id = models.CharField(max_length=24)
    created_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = "bench_ceiling_hit"

    def __str__(self) -> str:
        return self.event_id
