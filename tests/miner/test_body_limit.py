"""BodyLimit as an ASGI middleware: chunked bodies without a Content-Length are counted too."""

import asyncio

from miner.body_limit import BodyLimit


def run(middleware, headers, chunks):
    sent, inbox = (
        [],
        [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)],
    )

    async def receive():
        return inbox.pop(0)

    async def send(message):
        sent.append(message)

    asyncio.run(middleware({"type": "http", "headers": headers}, receive, send))
    return sent


async def reading_app(scope, receive, send):
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def test_a_chunked_body_over_the_limit_gets_413_and_the_app_never_answers():
    refused = []
    sent = run(
        BodyLimit(reading_app, 1000, refused.append),
        [(b"transfer-encoding", b"chunked")],
        [b"x" * 600, b"x" * 600, b"x" * 600],
    )
    assert sent[0]["status"] == 413 and refused == [1200]
    assert all(m.get("body") != b"ok" for m in sent)


def test_a_body_within_the_limit_reaches_the_app():
    sent = run(BodyLimit(reading_app, 1000), [(b"content-length", b"900")], [b"x" * 450, b"x" * 450])
    assert sent[0]["status"] == 200 and sent[1]["body"] == b"ok"
