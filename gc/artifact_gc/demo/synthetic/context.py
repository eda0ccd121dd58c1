"""What every row step of one project shares, and the tally of what they made."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime

from artifact_gc.demo.synthetic.shared import Shared
from artifact_gc.demo.synthetic.spec import SyntheticSpec
from artifact_gc.demo.synthetic.writer import RowWriter


@dataclass
class Tally:
    """What the projects made, for ``SyntheticStore``."""

    orphans: list[str] = field(default_factory=list)
    live: list[str] = field(default_factory=list)
    recent: list[str] = field(default_factory=list)
    preexisting: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, key: str, value: int) -> None:
        self.counts[key] = self.counts.get(key, 0) + value


@dataclass
class ProjectContext:
    """One project being written: where rows go, and the generator they draw from."""

    writer: RowWriter
    spec: SyntheticSpec
    #: Shared by every project and step: the order of draws fixes the store's content.
    rng: random.Random
    #: "Now", naive UTC.
    now: datetime
    root: str
    shared: Shared
    project_id: str
    project_name: str
    tally: Tally
