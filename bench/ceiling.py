"""The HTTP ceiling of this machine right now: uvicorn (uvloop, httptools) serving a raw ASGI app
that reads the body and answers 201 with a small JSON, nothing else. BRIEF.md measured 31,372 req/s
for this on a quiet machine; the same run next to airisd's single-point figure tells how much of a
gap is the machine (shared, busy) and how much is airisd.

    python bench/ceiling.py PORT
"""

from __future__ import annotations

import sys
from typing import Any

import uvicorn

BODY = b'{"success":true,"data":{"accepted":1}}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 201, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools",
                access_log=False, log_level="warning", lifespan="off")
