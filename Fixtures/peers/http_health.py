#!/usr/bin/python3
"""A stand-in for a real service's HTTP health endpoint (ScheduleZero's server answers GET /api/health).

    http_health.py --port P [--path /api/health] [--fail N]

Binds 127.0.0.1:P (0: a free port, printed) and answers GET PATH with 503 for the first N requests, then
200; any other path gets 404. Prints one line per request to stdout (`request K PATH -> STATUS`), so a test
reading the log sees that the governor waited for the 2xx. Standard library only; stops on SIGTERM.
"""
import argparse
import http.server
import signal
import sys

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, default=0)
parser.add_argument("--path", default="/api/health")
parser.add_argument("--fail", type=int, default=0, help="answer 503 to this many health requests first")
args = parser.parse_args()

count = 0


class Health(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        global count
        if self.path == args.path:
            count += 1
            status = 503 if count <= args.fail else 200
        else:
            status = 404
        body = b'{"status": "%s"}' % (b"ok" if status == 200 else b"unavailable")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        print(f"request {count} {self.path} -> {status}", flush=True)

    def log_message(self, *_):
        pass


server = http.server.HTTPServer(("127.0.0.1", args.port), Health)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print(f"listening 127.0.0.1:{server.server_address[1]}", flush=True)
try:
    server.serve_forever()
finally:
    server.server_close()
