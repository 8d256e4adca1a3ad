"""HTTP/1.1 connections: parsing with httptools, keep-alive, pipelining, upgrade.

Requests on one connection are answered strictly in order (pipelining). A request
is dispatched once its head has arrived; its body, if it has one, is a
``ReadableStream`` fed as it arrives, and the socket is not read while the app holds
more than the stream's high-water mark of it (backpressure: bounded memory for any
upload). A response whose body is a stream is written chunk by chunk as it is
produced (``Transfer-Encoding: chunked`` on HTTP/1.1). A request whose response is a
101 carrying a WebSocket hands the transport to ``WebSocketConnection``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httptools

from stateroom.api.headers import Headers
from stateroom.api.requests import Request
from stateroom.api.responses import Response
from stateroom.api.streams import BodyTooLargeError, ReadableStream, RequestBodyError
from stateroom.protocol.handshake import check_request, wants_websocket
from stateroom.protocol.target import TargetError, request_url
from stateroom.runtime.trace import RequestTrace, current_trace, object_of
from stateroom.server.responses import (
    debug_error_response,
    error_response,
    internal_error,
    serialize_response,
    serialize_stream_head,
)

if TYPE_CHECKING:
    from stateroom.server.server import Server

logger = logging.getLogger("stateroom.server")
access_logger = logging.getLogger("stateroom.access")

_TOKEN_METHOD = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+ ")


@dataclass(slots=True)
class _Pending:
    request: Request | None  # None: a refused request, answered with ``error``
    version: str
    keep_alive: bool
    head: bool
    upgrade_tail: bytes | None = None
    wants_close: bool = False
    error: bytes | None = None
    stream: ReadableStream | None = None  # the body, while it streams in


class HttpConnection(asyncio.Protocol):
    """One client TCP connection while it speaks HTTP/1.1."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.options = server.options
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.scheme = server.scheme
        self._queue: deque[_Pending] = deque()
        self._task: asyncio.Task[None] | None = None
        self._url = b""
        self._headers: list[tuple[str, str]] = []
        self._head_size = 0
        self._stream: ReadableStream | None = None  # the body of the request being read
        self._receiving: _Pending | None = None  # ... and that request
        self._body_size = 0
        self._length: bytes | None = None
        self._chunked = False
        self._body_progress = -1  # the body size when the timer last fired
        self._body_paused = False  # the app holds a full stream: the socket is not read
        self._sending_events = False  # a text/event-stream response is being streamed
        self._closing = False
        self._stalled: bytes | None = None  # bytes after an upgrade request, awaiting its fate
        self._timer: asyncio.TimerHandle | None = None
        self._in_message = False
        self._reading_paused = False
        self._write_paused: asyncio.Future[None] | None = None
        self._head_pending = False
        self._head_bytes = 0
        self._completed = 0
        # A request after which the connection closes was read: parse nothing after it.
        self._final = False
        self._eof = False  # the client half-closed: close once every answer has left
        self._access_log = self.options.access_log
        self._client = "-"  # host:port of the peer, for the access log

    # -- asyncio.Protocol -----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        tr: asyncio.Transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        self.transport = tr  # uvloop and asyncio both set TCP_NODELAY on accepted sockets
        if len(self.server.connections) >= self.options.max_connections:
            logger.warning("refusing a connection: %d are open", len(self.server.connections))
            tr.write(error_response(503, "ERROR: Too many connections; try again later."))
            self._close()
            return
        self.server.connection_opened(self)
        if self._access_log:
            peer = tr.get_extra_info("peername")
            if isinstance(peer, tuple) and len(peer) >= 2:
                self._client = f"{peer[0]}:{peer[1]}"
        self._arm_timer(self.options.header_timeout)
        tr.set_write_buffer_limits(high=self.options.write_buffer_high)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._cancel_timer()
        if self._write_paused is not None and not self._write_paused.done():
            self._write_paused.cancel()
        self.server.connection_closed(self)
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        if self._stalled is not None:
            self._stalled += data
            return
        completed = self._completed
        try:
            self.parser.feed_data(data)
            if self._head_pending:
                # llhttp buffers an unfinished header line without limit: count it here.
                self._head_bytes += len(data)
                if self._head_bytes > self.options.max_header_size:
                    self._fail_request(431, "message head is too large")
                    return
        except httptools.HttpParserUpgrade as exc:
            offset = int(exc.args[0])
            tail = data[offset:]
            if self._queue and self._queue[-1].upgrade_tail is None:
                self._queue[-1].upgrade_tail = tail
            self._stalled = b""
            self._pause_reading()
        except httptools.HttpParserInvalidMethodError:
            # Where the bad request starts is only known if it is the chunk's first.
            if self._completed == completed and _TOKEN_METHOD.match(data.lstrip()):
                self._fail_request(501, "ERROR: Unrecognized request method.", "connection-first")
            else:
                self._fail_request(400, "invalid HTTP method parsed")
        except httptools.HttpParserInvalidURLError:
            self._fail_request(400, "invalid URI")
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _Final):
                self._stalled = b""  # the connection ends after the final request's answer
                self._pause_reading()
            elif isinstance(cause, _BodyOverflow):
                # The request is with the app already: its reads of the body raise (413),
                # and the connection ends after its answer.
                self._stalled = b""
                self._pause_reading()
            elif isinstance(cause, _Reject):
                self._fail_request(cause.status, cause.body)
            else:
                logger.exception("HTTP parser callback failed")
                self._fail_request(400, "Bad Request")
        except httptools.HttpParserError as exc:
            if "PRI" in str(exc):  # an HTTP/2 preface: workerd just hangs up
                self._close()
            else:
                self._fail_request(400, _parser_error_text(str(exc)))

    def eof_received(self) -> bool | None:
        # Half-closed clients still get their pipelined answers; then the connection
        # closes, as no request can follow (RFC 9112 9.6).
        self._eof = True
        stream = self._stream
        if stream is not None:
            # The rest of the body the app is reading will never come.
            self._stream = None
            stream._fail(RequestBodyError("the client ended the request body early"))
            if self._receiving is not None:
                self._receiving.keep_alive = False
        if self._sending_events:
            # An event stream has no end for the client to wait for: its FIN is the
            # client leaving (EventSource and browsers close, they do not half-close).
            # Closing cancels the app's generator (connection_lost).
            return False
        return self._answering()

    def pause_writing(self) -> None:
        # The client is not reading its responses: read no more requests, and answer
        # no more of the queued ones, until it catches up.
        self._write_paused = self.loop.create_future()
        self._pause_reading()

    def resume_writing(self) -> None:
        waiter, self._write_paused = self._write_paused, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._stalled is None and len(self._queue) < 8:
            self._resume_reading()

    # -- httptools callbacks ----------------------------------------------------

    def on_message_begin(self) -> None:
        if self._final:
            raise _Final
        self._in_message = True
        self._head_pending = True
        self._head_bytes = 0
        self._url = b""
        self._headers = []
        self._head_size = 0
        self._body_size = 0
        self._length = None  # the Content-Length value, if any
        self._chunked = False  # a Transfer-Encoding field came
        # From its first byte, a request has header_timeout to arrive whole (slowloris).
        self._arm_timer(self.options.header_timeout)

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self.options.max_url_size:
            raise _Reject(414, "URI too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self.options.max_header_size:
            raise _Reject(431, "message head is too large")
        if len(self._headers) >= self.options.max_headers:
            raise _Reject(431, "too many header fields")
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))
        size = len(name)
        if size == 14 or size == 17:  # the framing fields, noted here rather than looked up
            lower = name.lower()
            if lower == b"content-length":
                self._length = value
            elif lower == b"transfer-encoding":
                self._chunked = True

    def on_headers_complete(self) -> None:
        self._head_pending = False
        parser = self.parser
        version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            raise _Reject(400, "invalid URI")
        method = parser.get_method().decode("ascii")
        headers = Headers._trusted(self._headers)
        try:
            full = request_url(self.scheme, headers.getAll("host"), self._url.decode("latin-1"))
        except TargetError as exc:
            # Any client can send these: one short line, and only at debug level.
            logger.debug("refusing a request: %s", exc)
            raise _Reject(400, "Bad Request" if exc.host else "invalid URI") from None
        keep_alive = parser.should_keep_alive()
        length = self._length  # llhttp has refused a repeated or malformed one
        chunked = self._chunked
        if parser.should_upgrade():
            # llhttp leaves the body of an upgrade request unread; were the upgrade
            # refused, that body would be parsed as the next request (request smuggling).
            if chunked or (length is not None and int(length) > 0):
                logger.debug("refusing an upgrade request with a body")
                raise _Reject(400, "ERROR: An upgrade request must not have a body.")
            chunked = False
            length = None
        elif version == "1.0" and chunked:
            keep_alive = False  # RFC 9112 6.1: faulty framing; close after answering it
        upgrade = headers.get("upgrade")
        if upgrade is not None and wants_websocket(upgrade):
            # User code sees the token in its canonical spelling, as on Cloudflare.
            headers.set("Upgrade", "websocket")
        connection = (headers.get("connection") or "").lower()
        pending = _Pending(
            request=None,
            version=version,
            keep_alive=keep_alive,
            head=method == "HEAD",
            wants_close="close" in connection,
        )
        if chunked or (length is not None and int(length) > 0):
            if length is not None and int(length) > self.options.max_body_size:
                raise _Reject(413, "request body is too large")
            stream = self._stream = pending.stream = ReadableStream._fed(self._body_drained)
            self._receiving = pending
            pending.request = Request._from_wire(full, method, headers, stream)
            expect = headers.get("expect")
            if expect is not None and expect.strip().lower() == "100-continue" and version == "1.1":
                # As workerd: 100 Continue goes out when the app first reads the body (its
                # turn has come: every earlier answer has left); an app that answers
                # without reading it gets no body, and the connection closes after.
                stream._on_first_read = self._send_continue
            # The body must keep arriving: the header timer, still running, checks for
            # progress when it fires (_timed_out) rather than being re-armed per chunk.
            self._body_progress = -1
        else:
            pending.request = Request._from_wire(full, method, headers, b"")
        # RFC 9112 9.6: no request after one that ends the connection is processed.
        self._final = not keep_alive
        self._queue.append(pending)
        if len(self._queue) > 32:
            self._pause_reading()
        if self._task is None or self._task.done():
            self._task = self.loop.create_task(self._process())

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        stream = self._stream
        if stream is None:
            return
        if self._body_size > self.options.max_body_size:
            self._stream = None
            stream._fail(BodyTooLargeError("request body is too large"))
            if self._receiving is not None:
                self._receiving.keep_alive = False
            raise _BodyOverflow
        if not stream._feed(body):
            self._body_paused = True
            self._cancel_timer()  # no data is read while paused: it cannot be late
            self._pause_reading()

    def _body_drained(self) -> None:
        """The app has read the body stream below its high-water mark: read the socket again."""
        if self._body_paused:
            self._body_paused = False
            if self._stream is not None:
                self._arm_timer(self.options.header_timeout)
            if self._stalled is None and self._write_paused is None and len(self._queue) < 8:
                self._resume_reading()

    def on_message_complete(self) -> None:
        self._completed += 1
        self._in_message = False
        self._cancel_timer()
        stream = self._stream
        if stream is not None:
            self._stream = None
            stream._end()
        self._receiving = None

    # -- request processing --------------------------------------------------------

    async def _process(self) -> None:
        while self._queue and not self._closing:
            if self._write_paused is not None:
                await self._write_paused
                continue
            pending = self._queue.popleft()
            if pending.request is None:
                assert self.transport is not None and pending.error is not None
                self.transport.write(pending.error)
                self._close()
                return
            if len(self._queue) < 8 and self._stalled is None and self._write_paused is None:
                self._resume_reading()
            if not self._origin_allowed(pending.request):
                assert self.transport is not None
                self.transport.write(
                    error_response(403, "ERROR: Origin not allowed.", order="connection-first")
                )
                self._close()
                return
            trace = RequestTrace()
            current_trace.set(trace)  # this task's context: user code sees it, no reset needed
            started = self.loop.time() if self._access_log else 0.0
            response = await self._respond(pending.request, trace)
            if self._closing:
                return
            if response.webSocket is not None:
                status = self._upgrade(pending, response)
                if self._access_log:
                    self._log_access(pending.request, pending.version, status, started, trace)
                return
            body = response._body  # a stream, or bytes / None (no property call per request)
            if isinstance(body, ReadableStream):
                if not await self._write_stream(pending, response, body):
                    return
                if self._access_log:
                    self._log_access(
                        pending.request, pending.version, response.status, started, trace
                    )
                if self._closing:
                    return
                continue
            try:
                self._write_response(pending, response)
            except Exception:
                logger.exception(
                    "Cannot send the response to %s [request id %s]",
                    pending.request.url,
                    trace.request_id,
                    extra={"request_id": trace.request_id},
                )
                response = internal_error(trace.request_id)
                self._write_response(pending, response)
            if self._access_log:
                self._log_access(pending.request, pending.version, response.status, started, trace)
            if self._closing:
                return
            if pending.upgrade_tail is not None:
                self._resume_after_upgrade_refused(pending.upgrade_tail)
        if self._eof and not self._closing:
            self._close()
        if not self._closing:
            # Idle: the keep-alive timeout; mid-way through the next request's head (it
            # started while we were busy): the rest of its header timeout.
            self._arm_timer(
                self.options.header_timeout if self._in_message else self.options.keep_alive_timeout
            )

    def _origin_allowed(self, request: Request) -> bool:
        """Cross-site WebSocket hijacking guard: browsers send Origin, and only the
        configured ones may open a WebSocket. Clients that send none are not browsers."""
        allowed = self.options.allowed_origins
        if allowed is None or not wants_websocket(request.headers.get("upgrade")):
            return True
        origin = request.headers.get("origin")
        return origin is None or origin in allowed

    async def _respond(self, request: Request, trace: RequestTrace) -> Response:
        try:
            return await self.server.events.fetch(request)
        except asyncio.CancelledError:
            raise
        except RequestBodyError as exc:
            return Response(f"ERROR: {exc}", status=exc.status)
        except Exception as exc:
            return self._uncaught(request, trace, exc)

    def _uncaught(self, request: Request, trace: RequestTrace, exc: Exception) -> Response:
        """The application raised: log it; answer 500 (with the traceback in ``dev``)."""
        # The object the exception escaped from; none: the Worker itself raised it (an
        # object it reached may have answered fine).
        where = object_of(exc)
        reached = where or trace.object
        extra: dict[str, str | None] = reached.fields() if reached is not None else {}
        place = f" in {where}" if where is not None else " in the Worker (Default)"
        if self.options.debug_errors:
            logger.error(
                "Uncaught exception while handling %s %s%s",
                request.method,
                request.url,
                place,
                exc_info=exc,
                extra=extra,
            )
            return debug_error_response(
                exc, request.method, request.url, where, request.headers.get("accept")
            )
        rid = extra["request_id"] = trace.request_id
        logger.error(
            "Uncaught exception while handling %s %s%s [request id %s]",
            request.method,
            request.url,
            place,
            rid,
            exc_info=exc,
            extra=extra,
        )
        return internal_error(rid)

    def _log_access(
        self, request: Request, version: str, status: int, started: float, trace: RequestTrace
    ) -> None:
        """One line per answered request, as uvicorn writes them (plus the duration)."""
        ms = (self.loop.time() - started) * 1000
        parts = request.url.split("/", 3)
        path = "/" + parts[3] if len(parts) == 4 else "/"
        where = trace.object
        extra: dict[str, object] = dict(where.fields()) if where is not None else {}
        extra.update(
            client=self._client,
            method=request.method,
            path=path,
            status=status,
            duration_ms=round(ms, 3),
            request_id=trace.known_request_id,  # made if a 500 or a log line asked for it
        )
        log = access_logger
        if log.isEnabledFor(logging.INFO):
            # makeRecord() and handle(): what info() does, less its walk up the stack to
            # find the caller, which no format here prints (a quarter of the line's cost).
            record = log.makeRecord(
                log.name,
                logging.INFO,
                __file__,
                0,
                '%s - "%s %s HTTP/%s" %d %.1fms%s',
                (
                    self._client,
                    request.method,
                    path,
                    version,
                    status,
                    ms,
                    f" {where}" if where is not None else "",
                ),
                None,
                None,
                extra,
            )
            log.handle(record)

    def _keeps_alive(self, pending: _Pending) -> bool:
        """Does the connection stay open after this answer?"""
        stream = pending.stream
        if stream is not None and not stream._done:
            self._abandon_body(pending, stream)
        return pending.keep_alive and not self.server.draining

    def _abandon_body(self, pending: _Pending, stream: ReadableStream) -> None:
        """The app answered before the body had all arrived: the client may be waiting for
        a 100 Continue that will not come, or still sending; what follows is not a request.
        Drop the rest and close after the answer."""
        stream._discard()
        pending.keep_alive = False
        self._stalled = b""
        self._pause_reading()

    async def _write_stream(
        self, pending: _Pending, response: Response, stream: ReadableStream
    ) -> bool:
        """Send a response whose body is a stream, each chunk as it comes; False: the
        connection is gone (the client left, or the app's stream failed midway)."""
        transport = self.transport
        assert transport is not None
        length = response.headers.get("content-length")
        chunked = pending.version == "1.1" and length is None
        # Without chunked framing (HTTP/1.0) or a length the app gave, the body ends
        # with the connection.
        keep_alive = (chunked or length is not None) and pending.keep_alive
        keep_alive = keep_alive and not self.server.draining
        if pending.version == "1.0":
            connection = "keep-alive" if keep_alive else None
        else:
            connection = None if keep_alive else "close"
        content_type = response.headers.get("content-type") or ""
        self._sending_events = content_type.startswith("text/event-stream")
        if self._sending_events and self._eof:
            self._close()  # the client left before its event stream began
            await stream.aclose()
            return False
        transport.write(
            serialize_stream_head(
                response,
                version=pending.version,
                head=pending.head,
                connection=connection,
                chunked=chunked,
            )
        )
        try:
            if not pending.head:
                async for chunk in stream:
                    if chunked:
                        transport.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
                    else:
                        transport.write(chunk)
                    if self._write_paused is not None:
                        await self._write_paused  # the client reads slower than we produce
                if chunked:
                    transport.write(b"0\r\n\r\n")
        except asyncio.CancelledError:
            raise  # the client went away: the app's generator was cancelled with this task
        except Exception:
            logger.exception("A streamed response body failed midway: %s", pending.request)
            transport.abort()  # no final chunk: the client knows the body is incomplete
            self._closing = True
            return False
        finally:
            self._sending_events = False
            await stream.aclose()
        if not self._keeps_alive(pending) or not keep_alive:
            self._close()
        elif pending.upgrade_tail is not None:
            self._resume_after_upgrade_refused(pending.upgrade_tail)
        return True

    def _write_response(self, pending: _Pending, response: Response) -> None:
        assert self.transport is not None
        stream = pending.stream
        if stream is not None and not stream._done:
            self._abandon_body(pending, stream)
        keep_alive = pending.keep_alive and not self.server.draining
        if pending.version == "1.0":
            connection = "keep-alive" if keep_alive else None
        else:
            connection = None if keep_alive else "close"
        self.transport.writelines(
            serialize_response(
                response, version=pending.version, head=pending.head, connection=connection
            )
        )
        if not keep_alive:
            self._close()

    def _upgrade(self, pending: _Pending, response: Response) -> int:
        """Write the 101 and hand the connection over; returns the status sent."""
        from stateroom.server.websocket import WebSocketConnection

        assert self.transport is not None
        request = pending.request
        assert request is not None
        client = response.webSocket
        assert client is not None
        headers = request.headers
        rejection = check_request(
            request.method,
            pending.version,
            headers.get("upgrade"),
            headers.getAll("connection"),
            headers.getAll("sec-websocket-key"),
            headers.getAll("sec-websocket-version"),
        )
        if rejection is not None:
            self.transport.write(
                error_response(
                    rejection.status,
                    rejection.body,
                    version=pending.version,
                    order="connection-first",
                    extra=rejection.headers,
                )
            )
            self._close()
            self.server.events.refuse_socket(client)
            return rejection.status
        self._cancel_timer()
        tail = (pending.upgrade_tail or b"") + (self._stalled or b"")
        self._stalled = None
        self.server.connection_closed(self)  # the WebSocket connection takes its place
        ws = WebSocketConnection(self.server, self.transport, client)
        ws.start(request, response, pending.version, pending.wants_close, tail)
        return 101

    def _resume_after_upgrade_refused(self, tail: bytes) -> None:
        """The app answered an upgrade request without upgrading: keep speaking HTTP."""
        rest = tail + (self._stalled or b"")
        self._stalled = None
        self.parser = httptools.HttpRequestParser(self)
        self._resume_reading()
        if rest:
            self.data_received(rest)

    # -- errors and lifetime ---------------------------------------------------------

    def _fail_request(self, status: int, body: str, order: str = "type-first") -> None:
        """Answer a request the parser refused, then close (what workerd does).

        Requests before it on the connection are answered first: responses leave in
        request order (RFC 9112 section 9.3.2), so the error waits its turn.
        """
        if self.transport is None or self._closing:
            return
        stream = self._stream
        if stream is not None:
            # The request is with the app already: its reads of the body raise, it is
            # answered (status, unless the app catches that), and the connection ends.
            self._stream = None
            stream._fail(RequestBodyError(body, status))
            if self._receiving is not None:
                self._receiving.keep_alive = False
            self._stalled = b""
            self._pause_reading()
            return
        if status == 400 and body == "Bad Request":
            # Known once the request line has been read (its head was refused whole).
            known = self._in_message is False or not self._head_pending
            version = self.parser.get_http_version() if known else "1.1"
            text = f"HTTP/{version} 400 Bad Request\r\nContent-Length: 11\r\n"
            if version != "1.0":
                text += "Connection: close\r\n"
            answer = text.encode() + b"\r\nBad Request"
        else:
            answer = error_response(status, body, order=order)
        self._stalled = b""  # read nothing more: the connection ends after this answer
        self._pause_reading()
        if self._answering():
            self._queue.append(_Pending(None, "1.1", False, False, error=answer))
            if self._task is None or self._task.done():
                self._task = self.loop.create_task(self._process())
            return
        self.transport.write(answer)
        self._close()

    def _answering(self) -> bool:
        """Are earlier requests still queued or being answered?"""
        return bool(self._queue) or (self._task is not None and not self._task.done())

    def _send_continue(self) -> None:
        """Tell a client waiting to send its body to go ahead (RFC 9110 10.1.1).

        Only for the request being read, and only once every answer before it has left:
        an interim response may not overtake an earlier request's answer.
        """
        if self._stream is not None and self.transport is not None and not self._closing:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _close(self) -> None:
        self._closing = True
        self._cancel_timer()
        if self.transport is not None:
            self.transport.close()

    def shutdown(self) -> None:
        """Server is stopping: close now if idle, else after the current response."""
        if not self._answering():
            self._close()

    def _pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._body_paused:
            return  # the app has not read the body it holds yet
        if self._reading_paused and self.transport is not None and not self._closing:
            self._reading_paused = False
            self.transport.resume_reading()

    def _arm_timer(self, delay: float) -> None:
        self._cancel_timer()
        self._timer = self.loop.call_later(delay, self._timed_out)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        stream = self._stream
        if stream is not None:
            if self._body_size != self._body_progress or self._body_paused:
                # Still arriving (or paused by the app, when no timer runs): look again.
                self._body_progress = self._body_size
                self._arm_timer(self.options.header_timeout)
                return
            # A body that stopped arriving (slowloris): the app's read of it fails.
            logger.debug("Dropping a request whose body stopped arriving")
            self._stream = None
            stream._fail(RequestBodyError("the request body stopped arriving", 408))
            if self.transport is not None:
                self.transport.abort()
            self._closing = True
            return
        if self._answering():
            return
        logger.debug("Closing idle or slow HTTP connection")
        if self.transport is not None:
            self.transport.abort() if self._in_message else self._close()
        self._closing = True


class _Final(Exception):
    """Raised at the start of a request that follows the connection's final one."""


class _BodyOverflow(Exception):
    """A streaming request body grew past ``max_body_size``."""


class _Reject(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(body)
        self.status = status
        self.body = body


def _parser_error_text(message: str) -> str:
    lower = message.lower()
    if "version" in lower:
        return "invalid HTTP version parsed"
    if "content-length" in lower or "content length" in lower:
        return "invalid content-length parsed"
    if "header" in lower:
        return "invalid HTTP header parsed"
    return "Bad Request"
