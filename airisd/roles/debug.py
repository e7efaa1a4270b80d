"""``POST /debug/profile/start`` and ``/debug/profile/stop`` (admin only, on every role): a CPU
profile of the running daemon, as the seed's troubleshooting section uses it.

pyinstrument samples the event-loop thread, where every request, the pipeline and the group commit
run (``async_mode="disabled"``: the whole thread, not one task); work handed to worker threads
(SQLite queries, scrypt) shows up as the loop waiting for it. One profile runs at a time, per
process. ``stop`` answers the call tree and a flat list of the hottest functions, and saves both the
text and pyinstrument's HTML view under ``<data_dir>/profiles/``. A profile left running stops by
itself after ``max_duration`` (default 10m) and is kept for the next ``stop``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.from_thread
import anyio.lowlevel
from starlette.requests import Request
from starlette.responses import Response

from airisd.errors import ApiError, ValidationError
from airisd.http.envelope import ok
from airisd.http.request import Params
from airisd.plugin import Route
from airisd.timeparse import format_duration, format_ts

if TYPE_CHECKING:
    from pyinstrument import Profiler

log = logging.getLogger("airisd.debug")

NS: Final = 1_000_000_000
DEFAULT_INTERVAL_NS: Final = 1_000_000  # 1 ms
MIN_INTERVAL_NS: Final = 100_000
MAX_INTERVAL_NS: Final = 100_000_000
DEFAULT_MAX_DURATION_NS: Final = 600 * NS
MAX_DURATION_NS: Final = 3600 * NS
MAX_TEXT_CHARS: Final = 200_000


class Conflict(ApiError):
    status = 409
    code = "CONFLICT"


@dataclass
class _Run:
    profiler: Profiler
    started_ns: int
    interval_ns: int
    max_duration_ns: int
    timer: threading.Timer | None = None


class DebugApi:
    """The profiler endpoints. One instance per process, shared by every role's listener."""

    def __init__(self, data_dir: Path) -> None:
        self.profile_dir = Path(data_dir) / "profiles"
        self._run: _Run | None = None
        self._expired: dict[str, Any] | None = None

    def routes(self) -> list[Route]:
        return [
            Route("POST", "/debug/profile/start", self.start, name="debug_profile_start", scope="admin"),
            Route("POST", "/debug/profile/stop", self.stop, name="debug_profile_stop", scope="admin"),
        ]

    @property
    def running(self) -> bool:
        return self._run is not None

    async def start(self, request: Request) -> Response:
        """Start sampling; ``interval`` (default 1ms) and ``max_duration`` (default 10m) are optional."""
        p = Params(request, {"interval", "max_duration"})
        interval = p.duration("interval") or DEFAULT_INTERVAL_NS
        max_duration = p.duration("max_duration") or DEFAULT_MAX_DURATION_NS
        if not MIN_INTERVAL_NS <= interval <= MAX_INTERVAL_NS:
            raise ValidationError("interval must be from 100us to 100ms", details={"field": "interval"})
        if not NS <= max_duration <= MAX_DURATION_NS:
            raise ValidationError("max_duration must be from 1s to 1h", details={"field": "max_duration"})
        if self._run is not None:
            since = format_ts(self._run.started_ns)
            raise Conflict(f"a profile is already running since {since}; POST /debug/profile/stop first",
                           details={"started_at": since})
        from pyinstrument import Profiler  # imported on first use: it costs memory in every daemon

        profiler = Profiler(interval=interval / NS, async_mode="disabled")
        profiler.start()
        run = self._run = _Run(profiler, time.time_ns(), interval, max_duration)
        self._expired = None
        token = anyio.lowlevel.current_token()
        run.timer = threading.Timer(max_duration / NS, self._expire_from_thread, (run, token))
        run.timer.daemon = True
        run.timer.start()
        log.info("profiling started", extra={"kv": {"interval": format_duration(interval),
                                                    "max_duration": format_duration(max_duration)}})
        return ok(request, {"started_at": format_ts(run.started_ns), "interval": format_duration(interval),
                            "max_duration": format_duration(max_duration)}, message="profiling started")

    async def stop(self, request: Request) -> Response:
        """Stop sampling and answer the profile (also saved under data_dir/profiles/)."""
        Params(request, set())
        if self._run is not None:
            result = await anyio.to_thread.run_sync(self._save, self._stop_run(self._run), False)
        elif self._expired is not None:
            result, self._expired = self._expired, None
        else:
            raise Conflict("no profile is running; POST /debug/profile/start first")
        return ok(request, result, message="profile stopped")

    def _stop_run(self, run: _Run) -> tuple[_Run, int]:
        if run.timer is not None:
            run.timer.cancel()
        run.profiler.stop()  # must run on the thread that started it: the event loop's
        self._run = None
        return run, time.time_ns()

    def _save(self, stopped: tuple[_Run, int], expired: bool) -> dict[str, Any]:
        run, stopped_ns = stopped
        session = run.profiler.last_session
        text = run.profiler.output_text(unicode=False, color=False)
        flat = run.profiler.output_text(unicode=False, color=False, flat=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(run.started_ns / NS))
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        text_path = self.profile_dir / f"profile-{stamp}.txt"
        html_path = self.profile_dir / f"profile-{stamp}.html"
        text_path.write_text(text + "\n" + flat, encoding="utf-8")
        html_path.write_text(run.profiler.output_html(), encoding="utf-8")
        result = {
            "started_at": format_ts(run.started_ns),
            "stopped_at": format_ts(stopped_ns),
            "duration_secs": round(session.duration, 3) if session else 0.0,
            "cpu_time_secs": round(getattr(session, "cpu_time", 0.0) or 0.0, 3) if session else 0.0,
            "sample_count": session.sample_count if session else 0,
            "expired": expired,
            "file": str(text_path),
            "html_file": str(html_path),
            "flat": flat[:MAX_TEXT_CHARS],
            "text": text[:MAX_TEXT_CHARS],
        }
        log.info("profile saved", extra={"kv": {"file": str(text_path), "expired": expired,
                                                "duration_secs": result["duration_secs"]}})
        return result

    def _expire_from_thread(self, run: _Run, token: Any) -> None:
        # the loop may have gone (shutdown): close() stopped the profiler already
        with contextlib.suppress(Exception):
            anyio.from_thread.run_sync(self._expire, run, token=token)

    def _expire(self, run: _Run) -> None:
        if self._run is not run:
            return
        stopped = self._stop_run(run)
        try:
            self._expired = self._save(stopped, True)
        except OSError as exc:
            log.error("could not save the profile", extra={"kv": {"error": str(exc)}})

    def close(self) -> None:
        """Stop a running profile (without saving). Safe twice; call it on the event loop's thread."""
        run = self._run
        if run is not None:
            self._stop_run(run)
