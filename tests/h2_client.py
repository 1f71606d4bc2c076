"""Test support for HTTP/2: a raw client that sends and reads frames one by one
(hyperframe and hpack, the frame and header layers of the python h2 package), so the
tests see exactly what the server sent and can send what a real client never would.

Every read has a deadline; the client answers PINGs and SETTINGS as any client must.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path

import hpack
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from support import IO_TIMEOUT

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# RFC 9113 section 7 error codes, section 6.5.2 settings.
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
FLOW_CONTROL_ERROR = 0x3
STREAM_CLOSED = 0x5
REFUSED_STREAM = 0x7
CANCEL = 0x8
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
SETTINGS_ENABLE_CONNECT_PROTOCOL = 0x8

MIB = 1024 * 1024


# ---------------------------------------------------------------------------------------
# A raw HTTP/2 client: frames in and out, nothing hidden
# ---------------------------------------------------------------------------------------


@dataclass
class Stream:
    """What the server sent on one stream."""

    status: int | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset: int | None = None  # the RST_STREAM error code, if the server reset it

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def json(self) -> dict:
        return json.loads(bytes(self.data))

    @property
    def done(self) -> bool:
        return self.ended or self.reset is not None


class H2:
    """A client connection that speaks HTTP/2 frame by frame.

    It answers PINGs and SETTINGS as any client must, and (with `auto_window`) gives back
    flow-control window for every DATA frame it reads. Everything received is kept in
    `frames`; per-stream results in `streams`. Every read has a deadline.
    """

    def __init__(self, sock: socket.socket, auto_window: bool = True):
        self.sock = sock
        self.sock.settimeout(IO_TIMEOUT)
        self.buf = bytearray()
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.auto_window = auto_window
        self.frames: list[Frame] = []
        self.streams: dict[int, Stream] = {}
        self.server_settings: dict[int, int] | None = None
        self.goaways: list[GoAwayFrame] = []
        self.eof = False
        self.next_id = 1
        # What we may send (RFC 9113 section 6.9): the server's windows for us.
        self.send_conn_window = 65535
        self.send_windows: dict[int, int] = {}
        self._block: tuple[int, bytearray, bool] | None = None

    # -- connecting ---------------------------------------------------------------------

    @classmethod
    def tcp(cls, port: int, **kw) -> H2:
        return cls(socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT), **kw)

    @classmethod
    def unix(cls, path: Path, **kw) -> H2:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(IO_TIMEOUT)
        sock.connect(str(path))
        return cls(sock, **kw)

    @classmethod
    def tls(cls, port: int, ctx: ssl.SSLContext, **kw) -> H2:
        ctx.set_alpn_protocols(["h2"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
        sock = ctx.wrap_socket(raw, server_hostname="localhost")
        assert sock.selected_alpn_protocol() == "h2"
        return cls(sock, **kw)

    def __enter__(self) -> H2:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def start(self, settings: dict[int, int] | None = None) -> dict[int, int]:
        """Send the preface and our SETTINGS; wait for the server's SETTINGS."""
        self.send_raw(PREFACE + SettingsFrame(0, settings=settings or {}).serialize())
        self.read_until(lambda: self.server_settings is not None, what="the server's SETTINGS")
        return self.server_settings

    # -- sending ------------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, *frames: Frame) -> None:
        self.send_raw(b"".join(f.serialize() for f in frames))

    def headers_frame(
        self,
        path: str,
        method: str = "GET",
        headers: list[tuple[str, str]] | tuple = (),
        end_stream: bool = True,
        authority: str | None = "t",
        scheme: str = "http",
        stream_id: int | None = None,
        pseudo: list[tuple[str, str]] | None = None,
    ) -> HeadersFrame:
        """A HEADERS frame opening a stream (registered in `streams`)."""
        sid = stream_id if stream_id is not None else self.next_id
        self.next_id = max(self.next_id, sid + 2)
        if pseudo is None:
            pseudo = [(":method", method), (":scheme", scheme), (":path", path)]
            if authority is not None:
                pseudo.append((":authority", authority))
        flags = ["END_HEADERS"] + (["END_STREAM"] if end_stream else [])
        frame = HeadersFrame(sid, data=self.enc.encode([*pseudo, *headers]), flags=flags)
        self.streams[sid] = Stream()
        initial = (self.server_settings or {}).get(SETTINGS_INITIAL_WINDOW_SIZE, 65535)
        self.send_windows.setdefault(sid, initial)
        return frame

    def request(self, path: str, method: str = "GET", body: bytes | None = None, **kw) -> int:
        """Open a stream; send `body` (within the windows) if given. Returns its id."""
        frame = self.headers_frame(path, method, end_stream=body is None, **kw)
        self.send(frame)
        if body is not None:
            self.send_body(frame.stream_id, body)
        return frame.stream_id

    def send_body(self, sid: int, body: bytes, end_stream: bool = True, stall: float = 0) -> int:
        """Send `body` as DATA frames, no more than the windows allow, waiting for
        WINDOW_UPDATEs. With `stall` > 0, give up once no window came for that many
        seconds; returns the bytes sent."""
        max_frame = 16384
        sent = 0
        stream = self.streams[sid]
        while sent < len(body) or (sent == 0 and not body):
            room = min(self.send_conn_window, self.send_windows[sid], max_frame)
            if room <= 0 and body:
                if stream.done or self.eof:
                    return sent
                got = self.read_until(
                    lambda: min(self.send_conn_window, self.send_windows[sid]) > 0 or stream.done,
                    timeout=stall or IO_TIMEOUT,
                    what=f"window to send more of stream {sid} ({sent} bytes sent)",
                    fail=not stall,
                )
                if not got:
                    return sent
                continue
            piece = body[sent : sent + room]
            last = sent + len(piece) >= len(body)
            flags = ["END_STREAM"] if last and end_stream else []
            self.send(DataFrame(sid, data=piece, flags=flags))
            self.send_conn_window -= len(piece)
            self.send_windows[sid] -= len(piece)
            sent += len(piece)
            if not body:
                break
        return sent

    def give_window(self, sid: int, n: int) -> None:
        self.send(
            WindowUpdateFrame(0, window_increment=n), WindowUpdateFrame(sid, window_increment=n)
        )

    # -- receiving ----------------------------------------------------------------------

    def _fill(self, timeout: float) -> bool:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
            data = b""
        finally:
            self.sock.settimeout(IO_TIMEOUT)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_frame(self, timeout: float = IO_TIMEOUT) -> Frame | None:
        """The next frame (handled), or None at EOF; socket.timeout if none in time."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(bytes(self.buf[:9])))
                if len(self.buf) >= 9 + length:
                    body = bytes(self.buf[9 : 9 + length])
                    del self.buf[: 9 + length]
                    frame.parse_body(memoryview(body))
                    self._handle(frame)
                    return frame
            if self.eof:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("no frame in time")
            self._fill(remaining)

    def _handle(self, frame: Frame) -> None:
        self.frames.append(frame)
        sid = frame.stream_id
        if isinstance(frame, SettingsFrame):
            if "ACK" not in frame.flags:
                old = (self.server_settings or {}).get(SETTINGS_INITIAL_WINDOW_SIZE, 65535)
                self.server_settings = {**(self.server_settings or {}), **frame.settings}
                new = self.server_settings.get(SETTINGS_INITIAL_WINDOW_SIZE, 65535)
                for k in self.send_windows:
                    self.send_windows[k] += new - old
                self._send_quietly(SettingsFrame(0, flags=["ACK"]))
        elif isinstance(frame, PingFrame):
            if "ACK" not in frame.flags:
                self._send_quietly(PingFrame(0, opaque_data=frame.opaque_data, flags=["ACK"]))
        elif isinstance(frame, (HeadersFrame, ContinuationFrame)):
            if isinstance(frame, HeadersFrame):
                self._block = (sid, bytearray(frame.data), "END_STREAM" in frame.flags)
            else:
                assert self._block is not None and self._block[0] == sid, frame
                self._block[1].extend(frame.data)
            if "END_HEADERS" in frame.flags:
                _, block, end = self._block
                self._block = None
                fields = self.dec.decode(bytes(block))
                stream = self.streams.setdefault(sid, Stream())
                status = dict(fields).get(":status")
                if status is not None and not status.startswith("1"):
                    stream.status = int(status)
                    stream.headers = [(k, v) for k, v in fields if not k.startswith(":")]
                if end:
                    stream.ended = True
        elif isinstance(frame, DataFrame):
            stream = self.streams.setdefault(sid, Stream())
            stream.data += frame.data
            if "END_STREAM" in frame.flags:
                stream.ended = True
            n = frame.flow_controlled_length
            if self.auto_window and n:
                updates = [WindowUpdateFrame(0, window_increment=n)]
                if not stream.ended:
                    updates.append(WindowUpdateFrame(sid, window_increment=n))
                self._send_quietly(*updates)
        elif isinstance(frame, RstStreamFrame):
            self.streams.setdefault(sid, Stream()).reset = frame.error_code
        elif isinstance(frame, GoAwayFrame):
            self.goaways.append(frame)
        elif isinstance(frame, WindowUpdateFrame):
            if sid == 0:
                self.send_conn_window += frame.window_increment
            elif sid in self.send_windows:
                self.send_windows[sid] += frame.window_increment

    def _send_quietly(self, *frames: Frame) -> None:
        """Protocol replies: the server may already be gone, which the test judges."""
        try:
            self.send(*frames)
        except OSError:
            pass

    def read_until(
        self, predicate, timeout: float = IO_TIMEOUT, what: str = "", fail: bool = True
    ) -> bool:
        """Read frames until `predicate()`; False (or an AssertionError when `fail`) if
        the time runs out or the server closes first."""
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise socket.timeout
                frame = self.read_frame(remaining)
            except socket.timeout:
                if fail:
                    raise AssertionError(
                        f"timed out after {timeout}s waiting for {what}: {self.summary()}"
                    ) from None
                return False
            if frame is None:
                if predicate():
                    return True
                if fail:
                    raise AssertionError(f"closed while waiting for {what}: {self.summary()}")
                return False
        return True

    def response(self, sid: int, timeout: float = IO_TIMEOUT) -> Stream:
        stream = self.streams[sid]
        self.read_until(lambda: stream.done, timeout, f"the end of stream {sid}")
        return stream

    def get(self, path: str, timeout: float = IO_TIMEOUT, **kw) -> Stream:
        return self.response(self.request(path, **kw), timeout)

    def wait_closed(self, timeout: float = IO_TIMEOUT) -> None:
        """Read (and handle) frames until the server closes the connection."""
        self.read_until(lambda: self.eof, timeout, "the server to close", fail=True)

    def summary(self) -> str:
        kinds = [
            f"{type(f).__name__}(s={f.stream_id}"
            + (f",code={f.error_code}" if hasattr(f, "error_code") else "")
            + (f",last={f.last_stream_id}" if isinstance(f, GoAwayFrame) else "")
            + ")"
            for f in self.frames[-40:]
        ]
        return f"eof={self.eof} frames(last 40)={kinds}"


def settings_value(conn: H2, key: int, default: int) -> int:
    return (conn.server_settings or {}).get(key, default)
