"""A byte-count progress bar for the CLI, drawn in place on a terminal and nowhere else.

:func:`for_stream` gives a bar on ``stream`` when it is a terminal and a silent one otherwise,
so piped or redirected output carries nothing but the command's result lines."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TextIO

BAR_WIDTH = 30


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


class Progress:
    """Bytes done out of ``total`` (set with :meth:`start`); draws nothing without a stream."""

    def __init__(self, stream: TextIO | None, verb: str) -> None:
        self.stream = stream
        self.verb = verb
        self.total = 0
        self.done = 0
        self.blobs = 0
        self.shown: tuple[int, int] | None = None

    def start(self, total: int) -> None:
        self.total = total
        self._draw()

    def chunks(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """``chunks`` unchanged, each counted as it is handed on (a consumer may stop asking
        once it has what it needs)."""
        for chunk in chunks:
            self.advance(len(chunk))
            yield chunk

    def advance(self, n: int) -> None:
        self.done += n
        self._draw()

    def blob_done(self) -> None:
        self.blobs += 1
        self._draw()

    def finish(self) -> None:
        """End the bar's line (once the work is done or has failed)."""
        if self.stream is not None and self.shown is not None:
            self.shown = None
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self) -> None:
        if self.stream is None:
            return
        done = min(self.done, self.total)
        filled = BAR_WIDTH * done // self.total if self.total else BAR_WIDTH
        state = (filled * 100 + (done * 100 // self.total if self.total else 100), self.blobs)
        if state == self.shown:
            return
        self.shown = state
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        self.stream.write(
            f"\r{self.verb} [{bar}] {_size(done)} / {_size(self.total)}, {self.blobs} blobs"
        )
        self.stream.flush()


def for_stream(stream: TextIO, verb: str) -> Progress:
    """A bar on ``stream`` if it is a terminal, else one that draws nothing."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        tty = False
    return Progress(stream if tty else None, verb)
