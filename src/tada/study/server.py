"""``tada study serve``: the study's pages on a small HTTP server, each answer in SQLite as it is given.

Routes: ``/`` (instructions and a start button), ``POST /start`` (a new rater with their own plan),
``/r/<rater>`` (the rater's next unanswered trial, so a rater who comes back, or whose server was
restarted, continues where they stopped), ``POST /r/<rater>/answer`` (one answer, committed before the
reply), ``/clips/<token>.wav`` (the study's anonymous clips, with byte ranges for seeking). Nothing else is
served: not the study's design, not the answers. Standard library only; no network beyond the socket it
binds (localhost unless told otherwise).
"""

from __future__ import annotations

import json
import math
import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from ..errors import TadaError
from .design import Study, Trial
from .pages import done_page, message_page, trial_page, welcome_page
from .store import AnswerStore

MAX_BODY = 64 * 1024
_RATER = r"[A-Za-z0-9_-]{6,32}"


class StudyServer:
    """Serves ``study`` on ``host:port``; :meth:`start` runs it on a thread, :meth:`serve_forever` in the caller."""

    def __init__(self, study: Study, host: str = "127.0.0.1", port: int = 8765, quiet: bool = False):
        from .. import validate

        validate.integer("--port", port, 1, 65535, "a TCP port")
        validate.port_free(host, port)
        self.study, self.quiet = study, quiet
        self.store = AnswerStore(study.answers_path)
        handler = type("Handler", (_Handler,), {"server_state": self})
        try:
            self.httpd = ThreadingHTTPServer((host, port), handler)
        except OSError as err:
            self.store.close()
            raise TadaError(f"cannot serve on {host}:{port}: {err.strerror or err}") from None
        self.httpd.daemon_threads = True
        self.url = f"http://{host}:{self.httpd.server_address[1]}/"
        self._thread: threading.Thread | None = None

    def start(self) -> StudyServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="tada-study", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        try:
            self.httpd.serve_forever()
        finally:
            self.close()

    def close(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join()
            self._thread = None
        self.httpd.server_close()
        self.store.close()

    def __enter__(self) -> StudyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- answers
    def record(self, rater: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Check and commit one answer; (HTTP status, JSON reply)."""
        plan = self.store.plan(rater)
        if plan is None:
            return HTTPStatus.NOT_FOUND, {"error": "unknown rater: start again from the study's first page"}
        index = body.get("trial")
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(plan):
            return HTTPStatus.BAD_REQUEST, {"error": f"no trial {index!r} in this rater's plan"}
        trial = plan[index]
        try:
            response = check_response(trial, body.get("response"))
            plays = _plays(body.get("plays"), len(trial.stimuli))
        except ValueError as err:
            return HTTPStatus.BAD_REQUEST, {"error": str(err)}
        if self.study.settings.require_listening and not all(plays):
            return HTTPStatus.BAD_REQUEST, {"error": "play every clip before answering"}
        ms = body.get("ms", 0.0)
        ms = float(ms) if isinstance(ms, (int, float)) and math.isfinite(ms) else 0.0
        saved = self.store.add(rater, index, trial, response, plays, ms)
        if not self.quiet and saved:
            print(f"answer: rater {rater[:6]} trial {index + 1}/{len(plan)} ({trial.kind}, {trial.item})", flush=True)
        return HTTPStatus.OK, {"ok": True, "saved": saved, "next": f"/r/{rater}"}


def check_response(trial: Trial, response: Any) -> dict[str, Any]:
    """The response as stored: ``{"choice": 0|1}`` for a pair, ``{"ratings": [0..100, ...]}`` for MUSHRA."""
    if not isinstance(response, dict):
        raise ValueError("the answer is missing")
    if trial.kind in ("ab", "check"):
        choice = response.get("choice")
        if choice not in (0, 1) or isinstance(choice, bool):
            raise ValueError("choose A or B")
        return {"choice": choice}
    ratings = response.get("ratings")
    if not isinstance(ratings, list) or len(ratings) != len(trial.stimuli):
        raise ValueError(f"rate all {len(trial.stimuli)} clips")
    for r in ratings:
        if not isinstance(r, (int, float)) or isinstance(r, bool) or not 0 <= r <= 100:
            raise ValueError("every rating is a number from 0 to 100")
    return {"ratings": [float(r) for r in ratings]}


def _plays(plays: Any, n: int) -> list[int]:
    if plays is None:
        return [0] * n
    if not isinstance(plays, list) or len(plays) != n or not all(isinstance(p, int) and p >= 0 for p in plays):
        raise ValueError("malformed play counts")
    return plays


class _Handler(BaseHTTPRequestHandler):
    server_state: StudyServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    # ---------------------------------------------------------------- replies
    def _send(self, status: int, body: bytes, kind: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _html(self, page: str, status: int = HTTPStatus.OK) -> None:
        self._send(status, page.encode(), "text/html; charset=utf-8")

    def _json(self, status: int, data: dict[str, Any]) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _redirect(self, location: str) -> None:
        self._send(HTTPStatus.SEE_OTHER, b"", "text/plain", {"Location": location})

    def _body(self) -> bytes | None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "answer too large"})
            return None
        return self.rfile.read(length)

    # ---------------------------------------------------------------- routes
    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        state, path = self.server_state, self.path.split("?", 1)[0]
        try:
            if path == "/":
                self._html(welcome_page(state.study))
            elif m := re.fullmatch(rf"/r/({_RATER})/?", path):
                self._trial(m.group(1))
            elif m := re.fullmatch(r"/clips/([0-9a-f]{16})\.wav", path):
                self._clip(m.group(1))
            else:
                self._html(message_page("Not found", "There is no such page in this study."), HTTPStatus.NOT_FOUND)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_POST(self) -> None:  # noqa: N802
        state, path = self.server_state, self.path.split("?", 1)[0]
        body = self._body()
        if body is None:
            return
        if path == "/start":
            name = parse_qs(body.decode("utf-8", "replace")).get("name", [""])[0].strip()[:80]
            self._redirect(f"/r/{state.store.new_rater(name, state.study.plan)}")
        elif m := re.fullmatch(rf"/r/({_RATER})/answer", path):
            try:
                data = json.loads(body or b"{}")
            except ValueError:
                self._json(HTTPStatus.BAD_REQUEST, {"error": "the answer is not JSON"})
                return
            if not isinstance(data, dict):
                self._json(HTTPStatus.BAD_REQUEST, {"error": "the answer is not a JSON object"})
                return
            self._json(*state.record(m.group(1), data))
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": "no such address"})

    def _trial(self, rater: str) -> None:
        state = self.server_state
        plan = state.store.plan(rater)
        if plan is None:
            page = message_page("Unknown link", 'This rater link is not known. <a href="/">Start the study</a>.')
            self._html(page, HTTPStatus.NOT_FOUND)
            return
        answered = state.store.answered(rater)
        pending = [i for i in range(len(plan)) if i not in answered]
        if not pending:
            self._html(done_page(len(plan)))
            return
        self._html(trial_page(state.study, rater, pending[0], plan, len(answered)))

    def _clip(self, token: str) -> None:
        state = self.server_state
        if token not in state.study.clips:
            self._send(HTTPStatus.NOT_FOUND, b"no such clip", "text/plain")
            return
        data = state.study.clip_path(token).read_bytes()
        headers = {"Accept-Ranges": "bytes"}
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "").strip())
        if m and (m.group(1) or m.group(2)):
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), len(data) - 1) if m.group(2) else len(data) - 1
            else:  # a suffix range: the last N bytes
                start, end = max(0, len(data) - int(m.group(2))), len(data) - 1
            if start >= len(data) or start > end:
                unsatisfiable = {"Content-Range": f"bytes */{len(data)}"}
                self._send(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, b"", "audio/wav", unsatisfiable)
                return
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            self._send(HTTPStatus.PARTIAL_CONTENT, data[start : end + 1], "audio/wav", headers)
            return
        self._send(HTTPStatus.OK, data, "audio/wav", headers)


__all__ = ["StudyServer", "check_response"]
