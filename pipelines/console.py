"""What a local run shows: one live progress display instead of kfp.local's stream of task logs.

kfp.local prints everything on stdout: its own lines ("Executing task 'prompts'", the outputs of
each task) and every line its task subprocesses write (the executor input as JSON, warnings, and
a tqdm bar redrawn into a pipe, one line per refresh). :class:`TaskLog` takes the place of stdout
while the pipeline runs and sorts those lines:

- every line, without colour codes, goes to the run's log file;
- with ``verbose`` every line also goes to stderr (colour codes only on a terminal);
- otherwise, on a terminal, the lines feed a live display (rich): one row per task with its state,
  the progress of its current bar (done/total, rate such as images/s, ETA) and its seconds; without
  a terminal (a log file, CI), one line per task when it ends, and no colour codes.

When a task fails, :meth:`TaskLog.failure` gives the one line that says why and the log file's
path: :func:`failure_reason` reads the task's last lines without the ``[rank0]: `` prefixes that
torch.distributed puts before a training process's traceback, and takes the last synk8s error
(``synk8s.errors.UsageError: ...``, or a torchrun worker's ``synk8s-error: UsageError ...``), else
the last exception line (``RuntimeError: ...``). Nothing here knows a stage by name: any pipeline's
tasks and any tqdm bar of any stage are shown the same way.
"""

from __future__ import annotations

import io
import re
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from synk8s import errors
from synk8s.distributed import ERROR_MARK

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_STARTED = re.compile(r"Executing task '(?P<task>[^']+)'")
_FINISHED = re.compile(r"Task '(?P<task>[^']+)' finished with status (?P<status>\w+)")
# tqdm's line: "desc:  45%|####      | 90/200 [00:02<00:03, 40.10img/s]" (the rate may read "?img/s" or "s/img").
_BAR = re.compile(
    r"^\s*(?P<desc>[^|]*?):\s+\d+%\|[^|]*\|\s*(?P<n>[\d.]+[kMG]?)/(?P<total>[\d.]+[kMG]?)"
    r"\s*\[(?P<elapsed>[\d:]+)<(?P<eta>[\d:?]+),\s*(?P<rate>[^\]]*)\]"
)
# An exception line, "synk8s.errors.UsageError: ..." or "RuntimeError: ...", once indentation and
# rank prefixes ("[rank0]: ", nested when a process joined two groups) are gone.
_RANK = re.compile(r"^\s*(?:\[rank\s?\d+\]:?\s*)+")
_ERROR = re.compile(r"^\s*(?P<module>[\w.]+\.)?(?P<kind>\w*(?:Error|Exception)):\s*(?P<message>\S.*)$")
_MARKED = re.compile(rf"^\s*{re.escape(ERROR_MARK)}\s*(?P<kind>\w+)\s+(?P<message>\S.*)$")
_SYNK8S_ERRORS = {
    name for name, value in vars(errors).items() if isinstance(value, type) and issubclass(value, errors.Synk8sError)
}


def failure_reason(lines: Iterable[str]) -> str | None:
    """The one line that says why a task failed, from the last lines of its log.

    Indentation and ``[rankN]: `` prefixes are dropped first. The last synk8s error wins (its message
    alone, as the CLI shows it); else the last other exception line (``RuntimeError: message``).

    Args:
        lines: the task's log lines, oldest first.

    Returns:
        The reason, or None when no line looks like an error.
    """
    synk8s_error = other = None
    for line in lines:
        line = _RANK.sub("", line)
        match = _MARKED.match(line) or _ERROR.match(line)
        if match is None:
            continue
        module = match.groupdict().get("module") or ""
        if match.group("kind") in _SYNK8S_ERRORS and module in ("", "synk8s.errors."):
            synk8s_error = match.group("message").strip()
        else:
            other = f"{match.group('kind')}: {match.group('message').strip()}"
    return synk8s_error or other


@dataclass
class TaskRow:
    """One task of the run as the display shows it.

    Attributes:
        name: the task's name (``prompts``, ``generate``, ``collect``, ...).
        state: ``running``, ``done``, ``failed``.
        started: ``time.monotonic()`` when it started.
        seconds: how long it ran, once it ended.
        bar: the current tqdm bar of the task: ``(description, done, total, rate, eta)``.
        runs: how many times a task of this name ran (the shards of a ParallelFor share one name).
        lines: the last lines the task wrote (for the failure message).
    """

    name: str
    state: str = "running"
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0
    bar: tuple[str, str, str, str, str] | None = None
    runs: int = 1
    lines: deque = field(default_factory=lambda: deque(maxlen=200))


class TaskLog(io.TextIOBase):
    """A text stream for kfp.local's output: log file, live display, or stderr (``verbose``)."""

    def __init__(self, log_path: Path, *, verbose: bool = False, console: Console | None = None) -> None:
        """Open ``log_path`` for the run's full log.

        Args:
            log_path: the log file (created with its folder; replaced if there).
            verbose: write every line to stderr too, and show no live display.
            console: where the display (or the verbose lines) goes; default stderr.
        """
        super().__init__()
        self.console = console or Console(stderr=True, soft_wrap=True, highlight=False)
        self.verbose = verbose
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._file = log_path.open("w", encoding="utf-8")
        self._pending = ""
        self.rows: dict[str, TaskRow] = {}
        self.current: TaskRow | None = None
        self._live: Live | None = None

    # ------------------------------------------------------------------ stream

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        """Take kfp.local's output; every complete line is handled at once."""
        self._pending += text
        *lines, self._pending = re.split(r"\r\n|\r|\n", self._pending)
        for line in lines:
            self._line(line)
        return len(text)

    def flush(self) -> None:
        self._file.flush()

    def __enter__(self) -> TaskLog:
        if not self.verbose and self.console.is_terminal:
            self._live = Live(self.table(), console=self.console, refresh_per_second=4, transient=False)
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pending:
            self._line(self._pending)
            self._pending = ""
        if self._live is not None:
            self._live.update(self.table())
            self._live.stop()
        self._file.close()

    # ------------------------------------------------------------------ lines

    def _line(self, raw: str) -> None:
        line = ANSI.sub("", raw)
        self._file.write(line + "\n")
        if self.verbose:
            self.console.out(raw if self.console.is_terminal else line, highlight=False)
        started, finished, bar = _STARTED.search(line), _FINISHED.search(line), _BAR.match(line)
        if started:
            self._start(started.group("task"))
        elif finished and finished.group("task") in self.rows:
            row = self.rows[finished.group("task")]
            row.state = "done" if finished.group("status") == "SUCCESS" else "failed"
            row.seconds += time.monotonic() - row.started
            if not self.verbose and self._live is None:  # not a terminal: one line per task, nothing redrawn
                self.console.out(f"{row.name} {row.state} in {time.monotonic() - row.started:.1f} s", highlight=False)
        elif self.current is not None:
            self.current.lines.append(line)
            if bar:
                self.current.bar = (
                    bar.group("desc").strip(), bar.group("n"), bar.group("total"), bar.group("rate").strip(),
                    bar.group("eta"),
                )
        if self._live is not None:
            self._live.update(self.table())

    def _start(self, name: str) -> None:
        row = self.rows.get(name)
        if row is None:
            row = self.rows[name] = TaskRow(name)
        else:  # another shard of a ParallelFor task
            row.runs, row.state, row.started, row.bar = row.runs + 1, "running", time.monotonic(), None
            row.lines.clear()
        self.current = row

    # ------------------------------------------------------------------ display

    def table(self) -> Table:
        """The live display: one row per task so far."""
        table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
        for column in ("task", "state", "progress", "rate", "ETA", "seconds"):
            table.add_column(column, justify="right" if column in ("seconds", "rate") else "left")
        for row in self.rows.values():
            name = f"{row.name} x{row.runs}" if row.runs > 1 else row.name
            running = row.state == "running"
            seconds = (row.seconds + time.monotonic() - row.started) if running else row.seconds
            progress = rate = eta = ""
            if row.bar and running:
                desc, done, total, rate, eta = row.bar
                progress = f"{desc} {done}/{total}"
            style = {"failed": "red", "done": "green"}.get(row.state, "")
            table.add_row(name, f"[{style}]{row.state}[/]" if style else row.state, progress, rate, eta,
                          f"{seconds:.1f}")
        return table

    def failure(self) -> str:
        """One line on the task that failed: its last error line and where the full log is."""
        failed = [row for row in self.rows.values() if row.state == "failed"] or (
            [self.current] if self.current else []
        )
        if not failed:
            return f"see the log at {self.log_path}"
        row = failed[-1]
        reason = failure_reason(row.lines)
        what = f": {reason}" if reason else ""
        return f"task '{row.name}' failed{what} (full log: {self.log_path})"

