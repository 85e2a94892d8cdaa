"""The stage engine: rows that describe stages (:mod:`.spec`), the table that lays them out and runs them
(:mod:`.table`), and resume (:mod:`.resume`). It imports no stage; :mod:`synk8s.stages.table` holds the rows."""

from synk8s.stagetable.table import Done, StageTable

__all__ = ["Done", "StageTable"]
