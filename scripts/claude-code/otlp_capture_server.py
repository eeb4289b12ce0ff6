#!/usr/bin/env python3
"""OTLP/HTTP capture server (stdlib only): records every request body unchanged.

Binds 127.0.0.1 only. Each request is saved as OUT_DIR/NNNN.body (the body exactly as
received, still compressed when the client compressed it) and described by one line of
OUT_DIR/requests.jsonl: sequence number, method, path, content type and encoding, body
length, user agent, and whether the client used chunked transfer encoding. Answers every
POST with 200 and an empty OTLP success body matching the request's content type.

  otlp_capture_server.py OUT_DIR [--port 0] [--port-file F]
"""
import argparse
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
STATE = {"n": 0}
ARGS = None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                line = self.rfile.readline().strip()
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass
                    return bytes(out), True
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n), False

    def do_POST(self):
        body, chunked = self.read_body()
        with LOCK:
            STATE["n"] += 1
            seq = STATE["n"]
            name = "%04d.body" % seq
            with open(os.path.join(ARGS.out, name), "wb") as f:
                f.write(body)
            entry = {
                "seq": seq,
                "method": "POST",
                "path": self.path,
                "content_type": self.headers.get("Content-Type"),
                "content_encoding": self.headers.get("Content-Encoding"),
                "chunked": chunked,
                "length": len(body),
                "user_agent": self.headers.get("User-Agent"),
                "file": name,
            }
            with open(os.path.join(ARGS.out, "requests.jsonl"), "a") as f:
                f.write(json.dumps(entry) + "\n")
        json_ct = "json" in (self.headers.get("Content-Type") or "")
        reply = b"{}" if json_ct else b""
        self.send_response(200)
        self.send_header("Content-Type", "application/json" if json_ct else "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file")
    ARGS = p.parse_args()
    os.makedirs(ARGS.out, exist_ok=True)
    srv = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    port = srv.server_address[1]
    if ARGS.port_file:
        with open(ARGS.port_file + ".tmp", "w") as f:
            f.write(str(port))
        os.rename(ARGS.port_file + ".tmp", ARGS.port_file)
    print("LISTENING %d" % port, flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
