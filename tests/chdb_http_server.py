"""A test fixture: ClickHouse's HTTP interface served by the chdb engine (ClickHouse 26.9 in-process).

No usable clickhouse-server can be had offline (Debian's is 18.16 from 2018, which clickhouse-connect
cannot talk to), but chdb embeds the real engine. This server puts that engine behind the HTTP
protocol clickhouse-connect speaks, so our output is tested over a real socket, with real SQL, real
MergeTree parts on disk and real errors:

- the query in the URL (``?query=``) and/or the body (for an INSERT the URL holds the statement and
  the body the data, in the format it names, e.g. Native);
- ``param_<name>`` query parameters for ``{name:Type}`` placeholders;
- ``database`` (becomes the session's current database), other ``<setting>=<value>`` parameters
  (applied with SET for this request; a setting a later request leaves out goes back to DEFAULT);
- request bodies compressed with gzip, deflate or lz4 (``Content-Encoding``); responses are sent
  uncompressed, which every client accepts;
- the response headers clickhouse-connect reads (X-ClickHouse-Summary, -Query-Id, -Format,
  -Timezone, -Server-Display-Name) and errors as ClickHouse sends them: ``Code: N. DB::Exception:
  ...`` with ``X-ClickHouse-Exception-Code`` and the HTTP status ClickHouse maps that code to.

One chdb session, with a persistent data path, serves every request in turn (chdb is not
thread-safe). Run: ``python tests/chdb_http_server.py --port N --path DIR``; SIGTERM closes the
session cleanly; SIGKILL leaves the parts already written, as with a real server.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import signal
import sys
import tempfile
import threading
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from chdb import session as chdb_session

# Parameters that are about the HTTP exchange, not query settings.
TRANSPORT_PARAMS = {
    "query", "database", "default_format", "session_id", "session_timeout", "session_check", "query_id",
    "compress", "decompress", "enable_http_compression", "wait_end_of_query", "send_progress_in_http_headers",
    "http_headers_progress_interval_ms", "buffer_size", "quota_key", "user", "password", "client_protocol_version",
    "role", "http_wait_end_of_query", "add_http_cors_header", "cancel_http_readonly_queries_on_client_close",
}
# ClickHouse's own mapping of error codes to HTTP statuses (HTTPHandler.cpp), the part we meet.
STATUS_OF_CODE = {
    62: 400, 27: 400, 26: 400, 36: 400, 38: 400, 41: 400, 47: 400, 53: 400, 69: 400, 72: 400, 117: 400,
    6: 400, 33: 400, 70: 400, 42: 400, 43: 400, 44: 400, 46: 400, 456: 400, 457: 400,  # parse/type/arg errors
    60: 404, 81: 404, 115: 404,  # unknown table, database, setting
    516: 401, 497: 403, 164: 403,  # authentication, access, readonly
    159: 408, 209: 408,  # timeouts
}
CODE_RE = re.compile(r"Code: (\d+)")
FORMAT_RE = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
INSERT_RE = re.compile(r"^\s*INSERT\s+INTO\s+(.+?)\s*(\([^)]*\))?\s*FORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE | re.DOTALL)
BODY_INSERT_RE = re.compile(rb"^\s*(INSERT\s+INTO\s.*?\bFORMAT\s+\w+)\r?\n?", re.IGNORECASE | re.DOTALL)
READ_RE = re.compile(r"^\s*(\(|SELECT|WITH|SHOW|DESCRIBE|DESC|EXISTS|EXPLAIN)\b", re.IGNORECASE)


class Engine:
    """The chdb session and the per-request plumbing around it, one request at a time."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.session = chdb_session.Session(path)
        self.lock = threading.Lock()
        self.spool = os.path.join(path, "_spool")
        os.makedirs(self.spool, exist_ok=True)
        self.database = ""  # the session's current database
        self.applied: dict[str, str] = {}  # settings SET on the session, as the last request asked

    def close(self) -> None:
        with self.lock:
            self.session.close()

    def execute(self, sql: str, body: bytes, params: dict[str, str]) -> tuple[bytes, str, dict[str, Any]]:
        """Run one HTTP request's statement; return (body, format, summary)."""
        qparams = {k[len("param_"):]: v for k, v in params.items() if k.startswith("param_")}
        settings = {k: v for k, v in params.items() if k not in TRANSPORT_PARAMS and not k.startswith("param_")}
        with self.lock:
            # Only what changed since the last request is sent to the engine (a SET costs a query).
            database = params.get("database") or "default"
            if database != self.database:
                self.session.query(f"USE {quote_ident(database)}")
                self.database = database
            for name in [n for n in self.applied if n not in settings]:
                self.session.query(f"SET {quote_ident(name)} = DEFAULT")
                del self.applied[name]
            for name, value in settings.items():
                if self.applied.get(name) != value:
                    self.session.query(f"SET {quote_ident(name)} = {quote_literal(value)}")
                    self.applied[name] = value
            return self._run(sql, body, qparams, params.get("default_format") or "TabSeparated")

    def _run(self, sql: str, body: bytes, qparams: dict[str, str], default_format: str) -> tuple[bytes, str, dict]:
        if not sql and body[:64].lstrip()[:6].upper() == b"INSERT":
            # The statement and its data in the body: "INSERT ... FORMAT Native\n<data>".
            head = BODY_INSERT_RE.match(body)
            if head:
                sql, body = head.group(1).decode(), body[head.end():]
        insert = INSERT_RE.match(sql)
        if insert and body:
            # chdb reads no request body: the data goes through a spool file (INSERT ... FROM INFILE)
            # in the format the INSERT names, which is what the server does with the body.
            table, columns, fmt = insert.group(1), insert.group(2) or "", insert.group(3)
            spool = os.path.join(self.spool, f"{uuid.uuid4().hex}.{fmt.lower()}")
            with open(spool, "wb") as f:
                f.write(body)
            try:
                stmt = f"INSERT INTO {table} {columns} FROM INFILE {quote_literal(spool)} FORMAT {fmt}"
                res = self.session.query(stmt, "TabSeparated", params=qparams or None)
            finally:
                os.unlink(spool)
            return b"", "", summary(res, written=True)
        if body:
            sql = f"{sql}\n{body.decode()}" if sql else body.decode()
        fmt_match = FORMAT_RE.search(sql)
        fmt = fmt_match.group(1) if fmt_match else default_format
        if fmt_match:
            sql = sql[: fmt_match.start()]
        res = self.session.query(sql, fmt, params=qparams or None)
        data = res.bytes()
        is_read = bool(READ_RE.match(sql))
        return data, fmt if is_read else "", summary(res, written=not is_read)


def summary(res: Any, *, written: bool) -> dict[str, Any]:
    rows, size = int(res.rows_read()), int(res.bytes_read())
    out = {"read_rows": str(rows), "read_bytes": str(size), "written_rows": "0", "written_bytes": "0",
           "total_rows_to_read": str(rows), "result_rows": str(rows), "result_bytes": str(size),
           "elapsed_ns": str(int(res.elapsed() * 1e9))}
    if written:
        out["written_rows"] = str(int(getattr(res, "rows_written", lambda: 0)()))
        out["written_bytes"] = str(int(getattr(res, "bytes_written", lambda: 0)()))
    return out


def quote_ident(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def quote_literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def decode_body(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if not encoding or encoding == "identity":
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "lz4":
        import lz4.frame

        return lz4.frame.decompress(body)
    if encoding == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress(body)
    raise ValueError(f"Content-Encoding {encoding!r} is not supported by this fixture")


class Handler(BaseHTTPRequestHandler):
    engine: Engine
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: Nagle would hold the body ~40 ms
    server_version = "chdb-http-fixture"

    def log_message(self, format: str, *args: Any) -> None:
        if os.environ.get("CHDB_HTTP_VERBOSE"):
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._handle(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        self._handle(body)

    def _read_chunked(self) -> bytes:
        out = bytearray()
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return bytes(out)
            out += self.rfile.read(size)
            self.rfile.readline()

    def _handle(self, body: bytes) -> None:
        url = urlsplit(self.path)
        if url.path in ("/ping", "/") and not url.query and not body:
            return self._send(200, b"Ok.\n", {"Content-Type": "text/plain"})
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        query_id = params.get("query_id") or str(uuid.uuid4())
        headers = {"X-ClickHouse-Query-Id": query_id, "X-ClickHouse-Timezone": "UTC",
                   "X-ClickHouse-Server-Display-Name": "chdb-fixture"}
        try:
            body = decode_body(body, self.headers.get("Content-Encoding", ""))
            data, fmt, summ = self.engine.execute(params.get("query", ""), body, params)
        except Exception as exc:  # the engine's error, sent as ClickHouse sends it
            text = str(exc).strip()
            match = CODE_RE.search(text)
            code = int(match.group(1)) if match else 1002
            if not match:
                text = f"Code: {code}. DB::Exception: {text}. (UNKNOWN_EXCEPTION)"
            headers["X-ClickHouse-Exception-Code"] = str(code)
            return self._send(STATUS_OF_CODE.get(code, 500), (text + "\n").encode(),
                              {**headers, "Content-Type": "text/plain; charset=UTF-8"})
        headers["X-ClickHouse-Summary"] = json.dumps(summ)
        if fmt:
            headers["X-ClickHouse-Format"] = fmt
        ctype = "application/octet-stream" if fmt in ("Native", "RowBinary", "Arrow", "Parquet") else "text/plain"
        return self._send(200, data, {**headers, "Content-Type": ctype})

    def _send(self, status: int, data: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--path", default="", help="data directory (persists across restarts); empty: a temporary one")
    args = ap.parse_args(argv)
    path = args.path or tempfile.mkdtemp(prefix="chdb-")
    engine = Engine(path)
    handler = type("BoundHandler", (Handler,), {"engine": engine})
    server = ThreadingHTTPServer((args.host, args.port), handler)
    server.daemon_threads = True

    def stop(*_: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"chdb HTTP fixture on http://{args.host}:{args.port} data={path}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
