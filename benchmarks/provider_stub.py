"""A minimal OpenAI-compatible provider for benchmarks: fixed answers, as fast as it can.

Run as ``python benchmarks/provider_stub.py PORT``. Non-streamed requests get a short answer;
streamed ones get TOKENS chunks of one word each, sent as fast as the socket takes them.
"""

import json
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

TOKENS = 2000
ANSWER = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "model": "bench",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Sunny."}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 2},
}
ANSWER_BYTES = json.dumps(ANSWER).encode()


def _chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
    body = {
        "id": "c",
        "object": "chat.completion.chunk",
        "model": "bench",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


async def completions(request: Request) -> Response:
    payload = await request.json()
    if not payload.get("stream"):
        return Response(ANSWER_BYTES, media_type="application/json")

    async def events():  # type: ignore[no-untyped-def]
        yield _chunk({"role": "assistant", "content": ""})
        for _ in range(TOKENS):
            yield _chunk({"content": "word "})
        yield _chunk({}, "stop")
        usage = {
            "id": "c",
            "choices": [],
            "usage": {"prompt_tokens": 12, "completion_tokens": TOKENS},
        }
        yield b"data: " + json.dumps(usage).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


app = Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
