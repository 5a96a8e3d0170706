"""The live progress bar on standard error: finished of total, succeeded and failed, submitted, retries.

Drawn only when standard error is a terminal; results go to standard output or --out untouched,
so `assay submit ... --wait > results.jsonl` shows the bar and keeps the file clean.
"""

from __future__ import annotations

import threading
from collections import Counter

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from assay_client._http import RetryEvent
from assay_client.models import Job


class Display:
    """Counts what happened; draws it if it may. Safe to call from the submitting and the waiting thread."""

    def __init__(self, analysis: str, total: int, *, waiting: bool, enabled: bool | None = None) -> None:
        self.console = Console(stderr=True)
        self.total = total
        self.waiting = waiting
        self.statuses: Counter[str] = Counter()
        self.submitted = 0
        self.reused = 0
        self.retries: Counter[str] = Counter()
        show = self.console.is_terminal if enabled is None else enabled
        self._drawn = show
        self._lock = threading.Lock()
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[green]✓ {task.fields[ok]} succeeded[/] [red]✗ {task.fields[bad]} failed[/]"),
            TextColumn("[dim]{task.fields[note]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            disable=not show,
            refresh_per_second=8,
        )
        self._task: TaskID = self._progress.add_task(analysis, total=total, ok=0, bad=0, note=self._note())

    def set_total(self, total: int) -> None:
        """Known once the input is read (which, for call records, waits on asking the server what it takes)."""
        self.total = total
        self._progress.update(self._task, total=total, note=self._note())

    def __enter__(self) -> Display:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.refresh()
        self._progress.stop()

    def _note(self) -> str:
        parts = [f"submitted {self.submitted}/{self.total}"]
        if self.reused:
            parts.append(f"{self.reused} already there")
        if self.retries:
            parts.append(f"{sum(self.retries.values())} retries")
        return " · ".join(parts)

    def _update(self, advance: int = 0) -> None:
        bad = self.statuses["failed"] + self.statuses["canceled"] + self.statuses["erased"]
        self._progress.update(self._task, advance=advance, ok=self.statuses["succeeded"], bad=bad, note=self._note())

    def on_submitted(self, jobs: list[Job], created: bool) -> None:
        self.submitted += len(jobs)
        if not created:
            self.reused += len(jobs)
        if not self.waiting:
            for job in jobs:
                self.statuses[_outcome(job)] += 1
        self._update(0 if self.waiting else len(jobs))

    def on_finished(self, job: Job) -> None:
        self.statuses[_outcome(job)] += 1
        self._update(1)

    def on_retry(self, event: RetryEvent) -> None:
        """Counted in the bar; without a bar, one line each, so a stalled run says why it waits."""
        with self._lock:  # told from the submitting thread and from every long-poll thread
            self.retries[f"{event.status or 'connection'} {event.error.code}"] += 1
        self._update()
        if not self._drawn:
            self.console.print(f"assay: {event.describe()}", highlight=False, soft_wrap=True)

    def summary(self, elapsed: float) -> str:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(self.statuses.items()) if n)
        if self.waiting and (unfinished := self.submitted - sum(self.statuses.values())) > 0:
            counts = f"{counts}, {unfinished} not final" if counts else f"{unfinished} not final"
        counts = counts or "nothing"
        line = f"{self.total} jobs: {counts}; {self.submitted - self.reused} new, {self.reused} already submitted"
        if self.retries:
            detail = ", ".join(f"{reason} ×{n}" for reason, n in sorted(self.retries.items()))
            line += f"; {sum(self.retries.values())} retries ({detail})"
        return f"{line}; {elapsed:.1f}s"


def _outcome(job: Job) -> str:
    """The job's status, or "erased": an erased job (`jobs delete`, then the same submit again) has no result
    to give, whatever status it ended in, so it is no success."""
    return "erased" if job.erased_at else job.status
