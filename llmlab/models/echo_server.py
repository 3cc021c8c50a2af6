"""A minimal OpenAI-compatible chat server on the loopback interface, for tests and benchmarks of
`model=api`: it answers `/v1/chat/completions` with the last user message's text after its last ": "
upper-cased (a canned "translation"), or with `answer(body)` when one is given (a canned judge), after `delay`
seconds, cut before the first of the request's `stop` strings as OpenAI's servers do (anywhere, even at the
start), and counts requests, the keys it saw, and the bodies it got (`bodies`)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class EchoServer:
    def __init__(self, delay: float = 0.0, answer=None):
        self.requests = 0
        self.bodies: list[dict] = []
        self.answer = answer
        self.auth: set = set()
        self.delay = delay
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests += 1
                owner.bodies.append(body)
                owner.auth.add(self.headers.get("Authorization"))
                if owner.delay:
                    time.sleep(owner.delay)
                text = (owner.answer(body) if owner.answer else
                        body["messages"][-1]["content"].rsplit(": ", 1)[-1].upper())
                cuts = [text.find(s) for s in body.get("stop") or () if s and s in text]
                text = text[:min(cuts)] if cuts else text
                reply = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                         "choices": [{"index": i, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
                                     for i in range(body.get("n", 1))]}
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
