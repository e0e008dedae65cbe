"""Reporting: what a phase did (Counts) and how the command line prints it (Reporter), with the
few shared words and formats (one timestamp format, one wording of "expires within").
Imports nothing of the package."""
from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from typing import TypedDict

# The actions a phase reports, in the order printed; text and JSON use the same words.
ACTIONS = ("connected", "created", "re-issued", "updated", "discarded", "written", "owner set", "kept", "skipped")
CHANGES = ("created", "re-issued", "updated")   # what a phase changed (written: how the commit did it)
# How `plan` words the same actions in text (its JSON keeps the action words above, with plan: true).
PLANNED = {"created": "would create", "re-issued": "would re-issue", "updated": "would update",
           "discarded": "would discard", "written": "would write", "owner set": "would set owner"}


def say(line: str, stream=None) -> None:
    """Print a line. A reader that went away (`higress-init run | head -1`) does not stop the
    work: the stream is pointed at /dev/null and the rest of the output is dropped."""
    stream = stream or sys.stdout
    try:
        print(line, file=stream, flush=True)
    except BrokenPipeError:
        try:  # later writes (and the interpreter's final flush) go nowhere instead of failing
            import os
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass


WIDTH = 120   # every line of text output fits a terminal this wide (errors excepted: one line each)


def wrap(text: str, indent: str = "", hang: str = "  ", width: int = WIDTH) -> str:
    """A paragraph within `width` columns: continuation lines indented by `hang` more; a word longer
    than a line (a deep path) is broken rather than left to overflow."""
    import textwrap
    if len(indent) + len(text) <= width:
        return indent + text
    return "\n".join(textwrap.wrap(text, width, initial_indent=indent, subsequent_indent=indent + hang,
                                    break_on_hyphens=False)) or indent


def timestamp(moment: datetime) -> str:
    """The one timestamp format of the output: UTC, second precision, ISO 8601 with Z."""
    return f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


def expires_within(lead: timedelta) -> str:
    return f"expires within {lead.days}d"


def short_duration(span: timedelta) -> str:
    """A span as kubeadm prints one (59s, 59m, 47h, 364d), except that days are not rounded down
    into years (a CA's 3649d says more than 9y)."""
    seconds = int(span.total_seconds())
    for unit, size, below in (("s", 1, 60), ("m", 60, 3600), ("h", 3600, 48 * 3600)):
        if seconds < below:
            return f"{seconds // size}{unit}"
    return f"{seconds // 86400}d"


def renewal(name: str, reason: str, expires: datetime, now: datetime, plan: bool) -> str:
    """Why a certificate or token is renewed, in status's words: `gateway: re-issued: expires within
    30d (12d left)`, `token console: would re-issue: expired 3d ago`."""
    left = remaining(expires, now)
    why = left if reason == "expired" else f"{reason} ({left}{'' if left.startswith('expired') else ' left'})"
    return f"{name}: {'would re-issue' if plan else 're-issued'}: {why}"


def remaining(expires: datetime, now: datetime) -> str:
    """Time left before `expires` in kubeadm's words: 364d, 23h, 5m, or `expired 3d ago`; never 0 or
    -1 (what whole days said of 23 hours left, or of one hour past expiry)."""
    left = expires - now
    if left.total_seconds() <= 0:
        return f"expired {short_duration(-left)} ago"
    return short_duration(left)


class Counts:
    """What a phase did, by action, naming each artifact."""

    def __init__(self):
        self.by_action: dict[str, list[str]] = {}

    def add(self, action: str, name: str) -> None:
        self.by_action.setdefault(action, []).append(name)

    def summary(self, plan: bool = False) -> str:
        actions = sorted(self.by_action, key=lambda a: ACTIONS.index(a) if a in ACTIONS else len(ACTIONS))
        words = PLANNED if plan else {}
        return ", ".join(f"{words.get(a, a)} {len(self.by_action[a])}" for a in actions) or "nothing to do"


class Reporter:
    """One line per phase and event, as text or as one JSON object a line (with a timestamp).
    Never key material; a closed stdout does not stop the work (say)."""

    def __init__(self, fmt: str = "text", stream=None, plan: bool = False):
        self.fmt, self.stream = fmt, stream or sys.stdout
        self.plan = plan        # `plan`: the text says what run would do

    def _print(self, line: str, stream) -> None:
        say(line, stream)

    def emit(self, event: str, text: str, **fields) -> None:
        if self.fmt == "json":
            record = {"time": timestamp(datetime.now(UTC)), "event": event, **fields}
            if self.plan:
                record["plan"] = True
            self._print(json.dumps(record, sort_keys=False), self.stream)
        else:
            self._print(text, self.stream)

    def phase(self, name: str, counts: Counts, seconds: float) -> None:
        self.emit("phase", f"{name:<14} {counts.summary(self.plan):<40} {seconds:6.2f}s", phase=name,
                  actions=dict(counts.by_action), seconds=round(seconds, 3))

    def message(self, text: str, **fields) -> None:
        """One event; in text, wrapped to WIDTH (JSON keeps the whole text in `message`)."""
        self.emit("message", wrap(text, hang="    "), message=text, **fields)

    def problem(self, kind: str, text: str) -> None:
        """An error or a refusal: one line on stderr, as text or as JSON (kind: error | refused)."""
        if self.fmt == "json":
            line = json.dumps({"time": timestamp(datetime.now(UTC)), "event": kind, "message": text})
        else:
            line = f"higress-init: {kind}: {text}"
        self._print(line, sys.stderr)


class Row(TypedDict, total=False):
    """One line of `status` (and of watch's metrics): a file the product writes, or a stored object,
    and what checking it found. Every package's status rows are these (made by `status_row`)."""
    name: str
    file: str
    subject: str
    issuer: str
    not_before: str
    not_after: str
    days_left: int | None
    remaining: str                    # added by status, from not_after
    chain_verified: bool | None
    key_matches: bool | None
    externally_managed: bool | None   # a CA whose key is not here (status's EXTERNALLY MANAGED column)
    state: str                        # "ok", or what is wrong


def status_row(name: str, file: str, **fields) -> Row:
    made = Row(name=name, file=file, subject="", issuer="", not_after="", days_left=None, chain_verified=None,
               key_matches=None, externally_managed=None, state="ok")
    made.update(fields)  # type: ignore[typeddict-item]  # the keyword names are Row's keys
    return made
