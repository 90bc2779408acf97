#!/usr/bin/python3
"""A foreign ScheduleZero server: registration and job dispatch as upstream's server does them, NO control channel.

Written from the wire doc (../shared/docs/schedulezero-wire.md) for the tests of interposition: the
harness can only fault what passes between it and its handlers. It keeps upstream's delivery rule (a job
is tried SZ_JOB_ATTEMPTS times, a cached connection is pinged before reuse, so a reply lost on the job link
makes the handler run the job again) and leaves out upstream's bugs (it exits 0 on SIGTERM within 1 s,
closes every socket with linger 0, rejects multipart, answers non-object requests).

Configuration (environment):
  SCHEDULEZERO_ZMQ_HOST / SCHEDULEZERO_ZMQ_PORT   registration REP bind (default 127.0.0.1 / 4244; `*` host
                                                  binds every interface; port 0 or `*` takes a free port)
  SCHEDULEZERO_HOST / SCHEDULEZERO_PORT           HTTP API (default 127.0.0.1 / 8890; 0 takes a free port)
  SCHEDULEZERO_DEPLOYMENT                         only reported (the real server picks built-in defaults)
  SZ_JOB_ATTEMPTS (3), SZ_JOB_TIMEOUT_MS (10000), SZ_JOB_RETRY_DELAY_MS (1000)   upstream's retry rule:
      delay base, doubling, +-50 % jitter, at least 100 ms; each call (and each ping before reuse) has the timeout
  SZ_SEED                                         seeds the jitter (default: random)

Registration REP: ping -> {"success": true, "message": "pong"}; register {handler_id, address, methods}
-> {"success", "handler_id", "address", "status": "registered"|"re-registered", "methods", "message"};
report_status {handler_id, status} -> unknown id {"success": false, "error": "Handler not registered"},
else {"success": true, "handler_id", "status"}; anything else `Unknown method: X`, `Invalid JSON`, ...

HTTP: GET /api/health -> {"status": "ok", "service": "ScheduleZero"}; GET /api/handlers -> the registry;
POST /api/run_now {handler_id, job_method, job_params} -> 200 {"success": true, "status": "success",
"result": <the handler's reply>, "attempts": N, "message"} or 500 {"success": false, "error": <last
attempt's error, e.g. "Handler returned error: ...">, "attempts": N}; 404 unknown handler, 400 bad request.

Writes ./handler_registry.json (atomically) on every change. stdout: one JSON object per line, `event`
first: ready, register, report_status, request, job, attempt, client_created, client_reused, ping_failed,
attempt_failed, job_succeeded, job_failed, http, signal, stopping, stopped, error.
Needs Debian's python3-zmq (run it with /usr/bin/python3).
"""
import datetime
import http.server
import json
import os
import random
import signal
import sys
import threading
import time

import zmq

sys.dont_write_bytecode = True  # importing peer_common must leave no __pycache__ in Fixtures/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_common import MULTIPART, arm_stop_watchdog, emit, env_int, install_stop_watchdog, now_iso  # noqa: E402


class Stopping(Exception):
    pass


class Client:
    """Upstream's ZMQClient, cleanly: one REQ socket, reopened (linger 0) after any timeout or error."""

    def __init__(self, server, address):
        self.server = server
        self.address = address
        self.sock = None
        self._open()

    def _open(self):
        self.sock = self.server.ctx.socket(zmq.REQ)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(self.address)

    def close(self):
        if self.sock is not None:
            self.sock.close(linger=0)
            self.sock = None

    def call(self, method, params, timeout_ms):
        try:
            self.sock.send_string(json.dumps({"method": method, "params": params or {}}))
            deadline = time.monotonic() + timeout_ms / 1000.0
            while True:
                if self.server.stop.is_set():
                    raise Stopping("server stopping")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("Request timeout: %s" % method)
                if self.sock.poll(min(50, max(1, int(left * 1000))), zmq.POLLIN):
                    reply = json.loads(self.sock.recv_string())
                    if not isinstance(reply, dict):
                        raise ValueError("Invalid reply: not a JSON object")
                    return reply
        except BaseException:
            # Lazy Pirate: a REQ socket that sent and got nothing is stuck; a new one replaces it.
            self.close()
            self._open()
            raise


class Slot:
    """Per handler: the cached client and the lock that serialises jobs on it."""

    def __init__(self):
        self.lock = threading.Lock()
        self.client = None
        self.stale = False  # re-registered or reported offline: the cached client must not be reused


class Server:
    def __init__(self):
        zhost = os.environ.get("SCHEDULEZERO_ZMQ_HOST") or "127.0.0.1"
        zport = (os.environ.get("SCHEDULEZERO_ZMQ_PORT") or "4244").strip()
        self.zmq_bind = "tcp://%s:%s" % (zhost, "*" if zport in ("0", "*") else zport)
        self.http_host = os.environ.get("SCHEDULEZERO_HOST") or "127.0.0.1"
        self.http_port = env_int("SCHEDULEZERO_PORT", 8890)
        self.deployment = os.environ.get("SCHEDULEZERO_DEPLOYMENT") or "default"
        self.attempts = max(1, env_int("SZ_JOB_ATTEMPTS", 3))
        self.timeout_ms = max(1, env_int("SZ_JOB_TIMEOUT_MS", 10000))
        self.delay_ms = max(0, env_int("SZ_JOB_RETRY_DELAY_MS", 1000))
        seed = os.environ.get("SZ_SEED")
        self.rng = random.Random(int(seed)) if seed and seed.strip() else random.Random()
        self.rng_lock = threading.Lock()
        self.stop = threading.Event()
        self.signal_name = None
        self.ctx = zmq.Context()
        self.registry = {}
        self.slots = {}
        self.lock = threading.Lock()
        self.registry_path = os.path.abspath("handler_registry.json")
        self.jobs = 0

    # ---- registry ----

    def save(self):
        with self.lock:
            data = {hid: {k: v for k, v in info.items()} for hid, info in self.registry.items()}
        tmp = self.registry_path + ".tmp-%d-%d" % (os.getpid(), threading.get_ident())
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
        os.replace(tmp, self.registry_path)

    def _invalidate(self, hid):
        slot = self.slots.get(hid)
        if slot is None:
            return
        slot.stale = True
        if slot.lock.acquire(blocking=False):  # idle: close it now; else the job in flight does
            try:
                if slot.client is not None:
                    slot.client.close()
                    slot.client = None
                slot.stale = False
            finally:
                slot.lock.release()

    def register(self, params):
        hid, address, methods = params.get("handler_id"), params.get("address"), params.get("methods", [])
        if not isinstance(hid, str) or not hid:
            return {"success": False, "error": "Invalid register request: handler_id must be a non-empty string"}
        if not isinstance(address, str) or not address:
            return {"success": False, "error": "Invalid register request: address must be a non-empty string"}
        if methods is None:
            methods = []
        if not isinstance(methods, list) or not all(isinstance(m, str) for m in methods):
            return {"success": False, "error": "Invalid register request: methods must be a list of strings"}
        stamp = now_iso()
        with self.lock:
            old = self.registry.get(hid)
            status = "re-registered" if old else "registered"
            self.registry[hid] = {"address": address, "methods": methods, "status": "registered",
                                  "registered_at": old["registered_at"] if old else stamp, "last_updated": stamp,
                                  "registrations": (old["registrations"] + 1) if old else 1}
            self.slots.setdefault(hid, Slot())
            self._invalidate(hid)
        self.save()
        emit("register", handler_id=hid, address=address, status=status, methods=methods)
        return {"success": True, "handler_id": hid, "address": address, "status": status, "methods": methods,
                "message": "Handler '%s' %s successfully" % (hid, status)}

    def report_status(self, params):
        hid, status = params.get("handler_id"), params.get("status")
        with self.lock:
            known = isinstance(hid, str) and hid in self.registry
            if known:
                self.registry[hid]["status"] = str(status)
                self.registry[hid]["last_updated"] = now_iso()
                if status == "offline":
                    self._invalidate(hid)
        emit("report_status", handler_id=hid, status=status, known=known)
        if not known:
            return {"success": False, "error": "Handler not registered"}
        self.save()
        return {"success": True, "handler_id": hid, "status": status}

    def handle(self, frames):
        if len(frames) != 1:
            return {"success": False, "error": MULTIPART}, None
        try:
            request = json.loads(frames[0].decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return {"success": False, "error": "Invalid JSON"}, None
        if not isinstance(request, dict):
            return {"success": False, "error": "Invalid request: expected a JSON object"}, None
        method = request.get("method")
        if not isinstance(method, str):
            return {"success": False, "error": "Invalid request: missing method"}, None
        params = request.get("params")
        if params is None:
            params = {}
        if not isinstance(params, dict):
            return {"success": False, "error": "Invalid request: params must be an object"}, method
        if method == "ping":
            return {"success": True, "message": "pong"}, method
        if method == "register":
            return self.register(params), method
        if method == "report_status":
            return self.report_status(params), method
        return {"success": False, "error": "Unknown method: %s" % method}, method

    # ---- jobs: upstream's JobExecutor + RegistryManager.get_client ----

    def _client(self, hid, slot, job):
        with self.lock:
            info = self.registry.get(hid)
        if info is None:
            raise ConnectionError("Handler '%s' not available or connection failed" % hid)
        if slot.stale and slot.client is not None:
            slot.client.close()
            slot.client = None
        slot.stale = False
        if slot.client is not None:
            try:
                pong = slot.client.call("ping", {}, self.timeout_ms)
                if pong.get("success") is False:
                    raise ConnectionError("Ping failed: %s" % pong.get("error"))
                emit("client_reused", job=job, handler_id=hid)
                return slot.client
            except Stopping:
                raise
            except Exception as e:  # noqa: BLE001 - any failed ping: a new client
                emit("ping_failed", job=job, handler_id=hid, error=str(e))
                slot.client.close()
                slot.client = None
        slot.client = Client(self, info["address"])
        emit("client_created", job=job, handler_id=hid, address=info["address"])
        return slot.client

    def run_job(self, hid, method, params):
        with self.lock:
            self.jobs += 1
            job = self.jobs
            slot = self.slots.setdefault(hid, Slot())
        emit("job", job=job, handler_id=hid, method=method)
        delay = self.delay_ms / 1000.0
        last_error = "not attempted"
        attempt = 0
        with slot.lock:
            while attempt < self.attempts:
                attempt += 1
                emit("attempt", job=job, attempt=attempt)
                try:
                    client = self._client(hid, slot, job)
                    reply = client.call(method, params, self.timeout_ms)
                    if reply.get("success") is False:
                        raise RuntimeError("Handler returned error: %s" % reply.get("error", "Unknown error"))
                    emit("job_succeeded", job=job, attempts=attempt, reply=reply)
                    return 200, {"success": True, "status": "success", "result": reply, "attempts": attempt,
                                 "message": "Job executed on handler '%s'" % hid}
                except Stopping:
                    emit("job_failed", job=job, attempts=attempt, error="server stopping")
                    return 503, {"success": False, "error": "Server stopping", "attempts": attempt}
                except Exception as e:  # noqa: BLE001 - upstream retries whatever went wrong
                    last_error = str(e)
                    emit("attempt_failed", job=job, attempt=attempt, error=last_error)
                    if attempt >= self.attempts:
                        break
                    with self.rng_lock:
                        jitter = self.rng.uniform(-0.5, 0.5) * delay
                    pause = max(0.1, delay + jitter)
                    delay *= 2
                    if self.stop.wait(pause):
                        emit("job_failed", job=job, attempts=attempt, error="server stopping")
                        return 503, {"success": False, "error": "Server stopping", "attempts": attempt}
        emit("job_failed", job=job, attempts=attempt, error=last_error)
        return 500, {"success": False, "error": last_error, "attempts": attempt}

    # ---- HTTP ----

    def make_http(self):
        server = self

        class API(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, fmt, *args):  # the access log goes to stdout as JSON (below)
                pass

            def _send(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                emit("http", method=self.command, path=self.path, status=status)

            def do_GET(self):
                path = self.path.split("?", 1)[0]
                if path == "/api/health":
                    return self._send(200, {"status": "ok", "service": "ScheduleZero"})
                if path == "/api/handlers":
                    with server.lock:
                        handlers = [dict(id=hid, **info) for hid, info in sorted(server.registry.items())]
                    return self._send(200, {"handlers": handlers, "count": len(handlers)})
                self._send(404, {"success": False, "error": "Not found: %s" % path})

            def do_POST(self):
                path = self.path.split("?", 1)[0]
                if path != "/api/run_now":
                    return self._send(404, {"success": False, "error": "Not found: %s" % path})
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                    body = json.loads(self.rfile.read(length).decode("utf-8")) if length else None
                except (ValueError, UnicodeDecodeError):
                    return self._send(400, {"success": False, "error": "Invalid JSON body"})
                if not isinstance(body, dict):
                    return self._send(400, {"success": False, "error": "Invalid request: expected a JSON object"})
                for field in ("handler_id", "job_method", "job_params"):
                    if field not in body:
                        return self._send(400, {"success": False, "error": "Missing required field: '%s'" % field})
                hid, method, params = body["handler_id"], body["job_method"], body["job_params"]
                if not isinstance(hid, str) or not isinstance(method, str):
                    return self._send(400, {"success": False, "error": "handler_id and job_method must be strings"})
                if not isinstance(params, dict):
                    return self._send(400, {"success": False, "error": "'job_params' must be a JSON object"})
                with server.lock:
                    info = server.registry.get(hid)
                if info is None:
                    return self._send(404, {"success": False, "error": "Handler '%s' not registered." % hid})
                if method not in info["methods"]:
                    return self._send(400, {"success": False,
                                            "error": "Method '%s' not exposed by handler '%s'." % (method, hid)})
                status, reply = server.run_job(hid, method, params)
                self._send(status, reply)

        httpd = http.server.ThreadingHTTPServer((self.http_host, self.http_port), API)
        httpd.daemon_threads = True
        return httpd

    # ---- main ----

    def run(self):
        rep = self.ctx.socket(zmq.REP)
        rep.setsockopt(zmq.LINGER, 0)
        try:
            rep.bind(self.zmq_bind)
        except zmq.ZMQError as e:
            emit("error", what="bind %s: %s" % (self.zmq_bind, e))
            rep.close(linger=0)
            self.ctx.term()
            return 1
        endpoint = rep.getsockopt_string(zmq.LAST_ENDPOINT)
        try:
            httpd = self.make_http()
        except OSError as e:
            emit("error", what="HTTP bind %s:%d: %s" % (self.http_host, self.http_port, e))
            rep.close(linger=0)
            self.ctx.term()
            return 1
        http_thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       name="http", daemon=True)
        http_thread.start()
        self.save()
        emit("ready", role="server", endpoint=endpoint, http="http://%s:%d" % httpd.server_address[:2],
             deployment=self.deployment, attempts=self.attempts, timeout_ms=self.timeout_ms,
             retry_delay_ms=self.delay_ms, pid=os.getpid())
        try:
            while not self.stop.is_set() and not self.signal_name:
                if not rep.poll(50, zmq.POLLIN):
                    continue
                frames = rep.recv_multipart()
                reply, method = self.handle(frames)
                emit("request", method=method, frames=len(frames), success=bool(reply.get("success", True)))
                rep.send_string(json.dumps(reply))
        finally:
            self.stop.set()
            if self.signal_name:
                emit("signal", signal=self.signal_name)
            emit("stopping")
            httpd.shutdown()
            httpd.server_close()
            rep.close(linger=0)
            # Jobs in flight see the stop within 50 ms and give their slot back; then every client goes.
            deadline = time.monotonic() + 0.5
            busy = 0
            with self.lock:
                slots = list(self.slots.values())
            for slot in slots:
                if slot.lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                    if slot.client is not None:
                        slot.client.close()
                        slot.client = None
                    slot.lock.release()
                else:
                    busy += 1
            if busy:
                self.ctx.destroy(linger=0)
            else:
                self.ctx.term()
        emit("stopped", clean=busy == 0)
        return 0


def main():
    server = Server()

    def on_signal(signum, _frame):
        # No lock and no I/O here: the interrupted main thread may hold the print lock, and a handler can be
        # entered again while it runs (a second signal): Event.set() takes the event's lock, and a peer that
        # got SIGTERM twice deadlocked on it. The main loop sees signal_name within its poll interval.
        server.signal_name = server.signal_name or signal.Signals(signum).name
        arm_stop_watchdog()

    install_stop_watchdog()
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)
    return server.run()


if __name__ == "__main__":
    sys.exit(main())
