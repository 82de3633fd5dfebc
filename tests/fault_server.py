"""A real chat-completions HTTP server on loopback that injects faults, for tests and bench/predict.py.

It speaks enough of the OpenAI chat-completions API for spinebench's openai backend: POST
{base}/chat/completions with a JSON body, answered with `choices[0].message.content`. Requests are matched
to items by a marker `[[name]]` inside the prompt text, and each item (or every request) can be given a
queue of faults consumed one per request:

    ok()                                   a normal answer (after the server's fixed latency)
    status(code, retry_after=None)         an HTTP error, optionally with a Retry-After header
    slow(seconds)                          answer only after `seconds` (beyond the client's timeout)
    malformed()                            200 with a body that is not JSON
    no_choices()                           200 with JSON that has no `choices`
    drop()                                 headers and half a body, then the socket is closed
    echo(code, text, key_at, keep)         the request's Authorization header quoted back, in an answer
                                           (code 200) or an error body (see `echo`)

Every request is recorded (marker, Authorization header, whether a PNG data URL was present, timing) and
the server tracks the largest number of requests it was serving at once. Run as a script it serves until
killed, printing its base URL (bench/predict.py runs it in a separate process so that the server's work
does not compete with the client for the GIL).
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import socket
import sys
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MARKER = re.compile(r"\[\[([^\]]+)\]\]")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Fault:
    kind: str
    status: int = 200
    retry_after: str | None = None
    delay_s: float = 0.0
    text: str = ""
    key_at: int | None = None
    keep: int | None = None


def ok() -> Fault:
    return Fault("ok")


def status(code: int, retry_after: str | float | None = None) -> Fault:
    return Fault("status", status=code, retry_after=None if retry_after is None else str(retry_after))


def slow(seconds: float) -> Fault:
    return Fault("slow", delay_s=seconds)


def malformed() -> Fault:
    return Fault("malformed")


def no_choices() -> Fault:
    return Fault("no_choices")


def drop() -> Fault:
    return Fault("drop")


def echo(
    code: int = 200,
    text: str = "You sent {auth}\nMy final option: [A]",
    *,
    key_at: int | None = None,
    keep: int | None = None,
) -> Fault:
    """Quote the request's Authorization header back, as a misconfigured proxy or a hostile server may.

    `text` is the answer (code 200) or the error message (any other code, in `{"error": {"message": ...}}`):
    `{auth}` stands for the whole header value (`Bearer <key>`), `{key}` for the key alone, cut to its
    first `keep` characters when `keep` is given (a server that truncates what it quotes). `key_at` pads the
    text so that the first quoted key begins at that character of the response body (an error) or of the
    answer (code 200): placed around a client's cut, it leaves a part of the key at the cut.
    """
    return Fault("echo", status=code, text=text, key_at=key_at, keep=keep)


def unused_base_url() -> str:
    """A base URL on loopback where nothing listens (connection refused): a server that is down."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@dataclass
class RequestRecord:
    marker: str | None
    authorization: str | None
    has_png_data_url: bool
    model: str | None
    fault: str
    started: float
    ended: float = 0.0


def default_reply(marker: str | None, body: dict | None = None) -> str:
    return f"The image of {marker} shows a normal spine.\nMy final option: [A]"


@dataclass
class _State:
    latency_s: float
    reply: Callable[[str | None, dict], str]
    lock: threading.Lock = field(default_factory=threading.Lock)
    per_item: dict[str, deque] = field(default_factory=lambda: defaultdict(deque))
    every_request: deque = field(default_factory=deque)
    requests: list[RequestRecord] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0


def _png_data_url_present(body: dict) -> bool:
    """Whether the request carries an image_url part holding a base64 PNG data URL."""
    for message in body.get("messages", []):
        content = message.get("content")
        for part in content if isinstance(content, list) else []:
            url = part.get("image_url", {}).get("url", "") if part.get("type") == "image_url" else ""
            if url.startswith("data:image/png;base64,"):
                try:
                    return base64.b64decode(url.split(",", 1)[1], validate=True).startswith(PNG_SIGNATURE)
                except ValueError:
                    return False
    return False


def _prompt_text(body: dict) -> str:
    texts = []
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        for part in content if isinstance(content, list) else []:
            if part.get("type") == "text":
                texts.append(part.get("text", ""))
    return "\n".join(texts)


def _completion(content: str) -> str:
    """A chat-completions response body answering `content`."""
    choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
    return json.dumps({"id": "chatcmpl-test", "object": "chat.completion", "choices": [choice]})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
    # Buffer each response and send it in one write (flushed at the end of the request), and disable Nagle's
    # algorithm: with separate header and body writes, Nagle plus the client's delayed ACK add ~40 ms.
    wbufsize = -1
    server: _Server

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format, *args):  # noqa: A002 - silence per-request logging to stderr
        pass

    def do_POST(self):
        state = self.server.state
        length = int(self.headers.get("Content-Length", 0))
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            body = {}
        text = _prompt_text(body)
        found = MARKER.search(text)
        marker = found.group(1) if found else None
        with state.lock:
            if state.every_request:
                fault = state.every_request.popleft()
            elif marker is not None and state.per_item[marker]:
                fault = state.per_item[marker].popleft()
            else:
                fault = ok()
            record = RequestRecord(
                marker=marker,
                authorization=self.headers.get("Authorization"),
                has_png_data_url=_png_data_url_present(body),
                model=body.get("model"),
                fault=fault.kind,
                started=time.monotonic(),
            )
            state.requests.append(record)
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            if self.path.rstrip("/").split("/")[-1] != "completions":
                self._send(404, b'{"error": "not found"}')
            else:
                self._serve(fault, marker, body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (timeout): nothing left to answer
        finally:
            with state.lock:
                state.in_flight -= 1
                record.ended = time.monotonic()

    def _serve(self, fault: Fault, marker: str | None, body: dict) -> None:
        state = self.server.state
        time.sleep(state.latency_s + fault.delay_s)
        if fault.kind == "status":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            self._send(
                fault.status, json.dumps({"error": {"message": f"injected {fault.status}"}}).encode(), headers
            )
        elif fault.kind == "echo":
            self._echo(fault)
        elif fault.kind == "malformed":
            self._send(200, b'{"choices": [{"message": {"content": "My final opt')
        elif fault.kind == "no_choices":
            self._send(200, json.dumps({"id": "x", "object": "chat.completion"}).encode())
        elif fault.kind == "drop":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "500")
            self.end_headers()
            self.wfile.write(b'{"choices": [')
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
        else:
            self._send(200, _completion(state.reply(marker, body)).encode())

    def _echo(self, fault: Fault) -> None:
        header = self.headers.get("Authorization") or ""
        key = header.split(" ", 1)[-1][: fault.keep]
        text = fault.text.replace("{auth}", header).replace("{key}", key)
        error = fault.status != 200

        def wrap(answer_or_message: str) -> str:
            return (
                json.dumps({"error": {"message": answer_or_message}})
                if error
                else _completion(answer_or_message)
            )

        padding = ""
        if fault.key_at is not None and key:
            # Where the key lands unpadded: in the body for an error, in the answer (what a client stores)
            # for a reply.
            unpadded = wrap(text) if error else text
            padding = "x" * max(0, fault.key_at - unpadded.find(key))
        self._send(fault.status, wrap(padding + text).encode())

    def _send(self, code: int, payload: bytes, headers: dict | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # a burst of concurrent connects must not overflow the listen backlog
    state: _State

    def handle_error(self, request, client_address):  # a client hanging up is not worth a traceback
        pass


class FaultServer:
    """The server in a background thread of this process: `with FaultServer() as server: server.base_url`."""

    def __init__(
        self, latency_s: float = 0.0, reply: Callable[[str | None, dict], str] = default_reply
    ) -> None:
        """`reply(marker, request_body)` gives the answer text of a request served normally."""
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = _State(latency_s=latency_s, reply=reply)
        # A short poll interval makes shutdown() (which waits for the next poll) quick in tests.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def state(self) -> _State:
        return self._server.state

    def plan(self, marker: str, *faults: Fault) -> None:
        """Faults for the next requests of the item whose prompt holds `[[marker]]`, in order."""
        with self.state.lock:
            self.state.per_item[marker].extend(faults)

    def plan_every_request(self, *faults: Fault) -> None:
        """Faults for the next requests whatever their item (taken before any per-item plan)."""
        with self.state.lock:
            self.state.every_request.extend(faults)

    def clear_plans(self) -> None:
        """Drop every fault not yet served: the next requests are answered normally."""
        with self.state.lock:
            self.state.every_request.clear()
            self.state.per_item.clear()

    def requests(self, marker: str | None = None) -> list[RequestRecord]:
        with self.state.lock:
            return [r for r in self.state.requests if marker is None or r.marker == marker]

    def request_counts(self) -> dict[str | None, int]:
        counts: dict[str | None, int] = defaultdict(int)
        for record in self.requests():
            counts[record.marker] += 1
        return dict(counts)

    @property
    def max_in_flight(self) -> int:
        return self.state.max_in_flight

    def reset_counters(self) -> None:
        with self.state.lock:
            self.state.requests.clear()
            self.state.max_in_flight = self.state.in_flight

    def start(self) -> FaultServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """Serve with a fixed latency until killed; the first line printed is the base URL."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.05, help="seconds before every answer")
    args = parser.parse_args(argv)
    server = FaultServer(latency_s=args.latency).start()
    print(server.base_url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
