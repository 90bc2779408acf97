#!/usr/bin/python3
"""A foreign ScheduleZero handler: behaves on the wire like upstream's test handler, with NO control channel.

It is what the harness faces when it tests a real deployment: nothing but the ScheduleZero protocol, so
message faults can only be applied by an interposer in front of it (the governor's `interpose: true`).
Written from the wire doc (../shared/docs/schedulezero-wire.md), with upstream's known bugs left out
(it is a CLEAN peer: it exits promptly on SIGTERM even when the server is gone, and rejects multipart).

Configuration (environment, upstream's names first):
  SCHEDULEZERO_TEST_HANDLER_ID   handler id (default test-handler-001)
  SCHEDULEZERO_HANDLER_HOST      host to bind (default 127.0.0.1; `*` binds every interface and, exactly
                                 like upstream, advertises the bound endpoint tcp://0.0.0.0:PORT)
  SCHEDULEZERO_HANDLER_PORT      port to bind (default 4244; 0 or `*` takes a free port)
  SCHEDULEZERO_SERVER_HOST/PORT  the server's registration endpoint (default 127.0.0.1 / 4242)
  SCHEDULEZERO_MAX_RETRIES       consecutive failed registration attempts before it stops trying (default 5);
                                 the REP socket keeps serving
  SZ_HEARTBEAT_MS                ping the server this often once registered (default 30000)
  SZ_REGISTRATION_TIMEOUT_MS     timeout of each registration call (default 10000)
  SZ_REGISTRATION_RETRY_MS       wait between failed registration attempts (default 15000)
  SZ_OFFLINE_TIMEOUT_MS          how long the SIGTERM `report_status offline` may wait (default 1000)
  SZ_NO_REGISTRATION=1           do not register at all (serve only)

Registration, as upstream: bind the REP socket, register `socket.getsockopt(zmq.LAST_ENDPOINT)` as
`address`; on one REQ socket `ping`, then `register {handler_id, address, methods}`. Once registered, a
`ping` every SZ_HEARTBEAT_MS; a failed ping closes the REQ socket (linger 0), opens a new one, pings and
registers again.

Methods (replies as upstream's tests/test_handler.py): ping, heartbeat, increment_counter{counter_name},
write_file{filename, content}, append_to_file{filename, content}, write_timestamp{filename},
get_execution_count -> {total_executions, by_method, handler_id}, clear_output, plus two for the
harness: slow{ms, first?} sleeps `ms` (only on its first `first` executions when given, then answers at
once) and fail{error} answers {"success": false, "error": error}.
Every execution of every method (ping included) is counted by method in memory (get_execution_count, reset
by clear_output) and appended as one JSON line to ./execution_log.jsonl (never truncated), so a test can
count exactly how many times a job ran. Files go to ./test_output/ (plain file names only).

stdout: one JSON object per line, `event` first: ready, execute {method, n} (an execution starts),
request {method, frames, success} (answered), registration_failed, registered,
heartbeat_failed, registration_gave_up, signal, offline_reported, offline_report_failed, stopped.
Needs Debian's python3-zmq (run it with /usr/bin/python3).
"""
import datetime
import json
import os
import signal
import sys
import threading
import time

import zmq

sys.dont_write_bytecode = True  # importing peer_common must leave no __pycache__ in Fixtures/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_common import MULTIPART, arm_stop_watchdog, emit, env_int, install_stop_watchdog, now_iso  # noqa: E402

METHODS = ["ping", "heartbeat", "increment_counter", "write_file", "append_to_file", "write_timestamp",
           "get_execution_count", "clear_output", "slow", "fail"]


class Handler:
    def __init__(self):
        self.handler_id = os.environ.get("SCHEDULEZERO_TEST_HANDLER_ID") or "test-handler-001"
        host = os.environ.get("SCHEDULEZERO_HANDLER_HOST") or "127.0.0.1"
        port = (os.environ.get("SCHEDULEZERO_HANDLER_PORT") or "4244").strip()
        if port == "0":
            port = "*"
        self.bind_address = "tcp://%s:%s" % (host, port)
        self.server = "tcp://%s:%s" % (os.environ.get("SCHEDULEZERO_SERVER_HOST") or "127.0.0.1",
                                       os.environ.get("SCHEDULEZERO_SERVER_PORT") or "4242")
        self.max_retries = max(1, env_int("SCHEDULEZERO_MAX_RETRIES", 5))
        self.heartbeat_ms = max(10, env_int("SZ_HEARTBEAT_MS", 30000))
        self.timeout_ms = max(10, env_int("SZ_REGISTRATION_TIMEOUT_MS", 10000))
        self.retry_ms = max(0, env_int("SZ_REGISTRATION_RETRY_MS", 15000))
        self.offline_timeout_ms = max(10, env_int("SZ_OFFLINE_TIMEOUT_MS", 1000))
        self.register_enabled = os.environ.get("SZ_NO_REGISTRATION", "") not in ("1", "true", "yes")
        self.stop = threading.Event()
        self.signal_name = None
        self.ctx = zmq.Context()
        self.address = None
        self.registered = False
        self.counts = {}
        self.total = 0
        self.slow_seen = 0
        self.counters = {}
        self.output_dir = os.path.abspath("test_output")
        self.log_path = os.path.abspath("execution_log.jsonl")

    # ---- registration (its own thread, its own REQ sockets) ----

    def _call(self, sock, request, timeout_ms):
        """One request on `sock`; the reply dict, or raises. Waits in slices so a stop cuts it off."""
        sock.send_string(json.dumps(request))
        deadline = time.monotonic() + timeout_ms / 1000.0
        while True:
            if self.stop.is_set():
                raise RuntimeError("stopping")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no reply within %d ms" % timeout_ms)
            if sock.poll(min(50, max(1, int(left * 1000))), zmq.POLLIN):
                reply = json.loads(sock.recv_string())
                if not isinstance(reply, dict):
                    raise ValueError("reply is not a JSON object")
                return reply

    def _open(self):
        sock = self.ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.server)
        return sock

    def _register_once(self):
        """ping then register on one fresh REQ socket; the socket (kept for heartbeats) or raises."""
        sock = self._open()
        try:
            pong = self._call(sock, {"method": "ping"}, self.timeout_ms)
            if not pong.get("success", True):
                raise ConnectionError("ping failed: %s" % pong.get("error"))
            reply = self._call(sock, {"method": "register", "params": {
                "handler_id": self.handler_id, "address": self.address, "methods": METHODS}}, self.timeout_ms)
            if not reply.get("success", True):
                raise ConnectionError("register refused: %s" % reply.get("error"))
        except BaseException:
            sock.close(linger=0)
            raise
        emit("registered", server=self.server, address=self.address, status=reply.get("status"), reply=reply)
        return sock

    def registration_loop(self):
        failures = 0
        sock = None
        try:
            while not self.stop.is_set():
                if sock is None:
                    try:
                        sock = self._register_once()
                        self.registered = True
                        failures = 0
                    except Exception as e:  # noqa: BLE001 - every failure counts the same
                        if self.stop.is_set():
                            break
                        failures += 1
                        emit("registration_failed", server=self.server, attempt=failures, error=str(e))
                        if failures >= self.max_retries:
                            emit("registration_gave_up", server=self.server, attempts=failures)
                            return
                        self.stop.wait(self.retry_ms / 1000.0)
                        continue
                if self.stop.wait(self.heartbeat_ms / 1000.0):
                    break
                try:
                    pong = self._call(sock, {"method": "ping"}, self.timeout_ms)
                    if not pong.get("success", True):
                        raise ConnectionError("ping failed: %s" % pong.get("error"))
                except Exception as e:  # noqa: BLE001
                    if self.stop.is_set():
                        break
                    emit("heartbeat_failed", server=self.server, error=str(e))
                    sock.close(linger=0)
                    sock = None
                    self.registered = False
        finally:
            if sock is not None:
                sock.close(linger=0)

    def report_offline(self):
        """report_status offline on a fresh socket, bounded wait, linger 0 (upstream can hang here)."""
        if not self.registered:
            return
        sock = self._open()
        try:
            sock.send_string(json.dumps({"method": "report_status",
                                         "params": {"handler_id": self.handler_id, "status": "offline"}}))
            if sock.poll(self.offline_timeout_ms, zmq.POLLIN):
                reply = json.loads(sock.recv_string())
                emit("offline_reported", success=bool(isinstance(reply, dict) and reply.get("success", True)), reply=reply)
            else:
                emit("offline_report_failed", error="no reply within %d ms" % self.offline_timeout_ms)
        except Exception as e:  # noqa: BLE001
            emit("offline_report_failed", error=str(e))
        finally:
            sock.close(linger=0)

    # ---- methods ----

    def _safe_name(self, params, key, default):
        name = params.get(key, default)
        if not isinstance(name, str) or not name or "/" in name or name in (".", "..") or "\0" in name:
            raise ValueError("Invalid %s: %r (a plain file name inside test_output/)" % (key, name))
        os.makedirs(self.output_dir, exist_ok=True)
        return os.path.join(self.output_dir, name)

    def _write_atomic(self, path, text):
        tmp = path + ".tmp-%d" % os.getpid()
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)

    def m_ping(self, params):
        return {"success": True, "message": "pong", "handler_id": self.handler_id}

    def m_heartbeat(self, params):
        return {"status": "alive", "handler_id": self.handler_id, "timestamp": now_iso()}

    def m_increment_counter(self, params):
        name = params.get("counter_name", "default")
        if not isinstance(name, str):
            raise ValueError("counter_name must be a string")
        value = self.counters.get(name, 0) + 1
        self.counters[name] = value
        return {"status": "success", "counter": name, "value": value}

    def m_write_file(self, params):
        path = self._safe_name(params, "filename", "default.txt")
        content = str(params.get("content", ""))
        self._write_atomic(path, content)
        return {"status": "success", "file": path, "size": len(content)}

    def m_append_to_file(self, params):
        path = self._safe_name(params, "filename", "default.txt")
        with open(path, "a") as f:
            f.write(str(params.get("content", "")) + "\n")
        with open(path) as f:
            lines = len(f.readlines())
        return {"status": "success", "file": path, "lines": lines}

    def m_write_timestamp(self, params):
        path = self._safe_name(params, "filename", "timestamp.txt")
        stamp = datetime.datetime.now()
        self._write_atomic(path, "EXECUTION_TIME: %s" % stamp.strftime("%Y-%m-%d %H:%M:%S"))
        return {"status": "success", "file": path, "timestamp": stamp.isoformat()}

    def m_get_execution_count(self, params):
        return {"total_executions": self.total, "by_method": dict(self.counts), "handler_id": self.handler_id}

    def m_clear_output(self, params):
        removed = 0
        if os.path.isdir(self.output_dir):
            for name in os.listdir(self.output_dir):
                p = os.path.join(self.output_dir, name)
                if os.path.isfile(p):
                    os.unlink(p)
                    removed += 1
        self.counts, self.total, self.counters = {}, 0, {}
        return {"status": "success", "files_removed": removed, "log_reset": True}

    def m_slow(self, params):
        ms = params.get("ms", 1000)
        first = params.get("first")
        if not isinstance(ms, (int, float)) or isinstance(ms, bool) or ms < 0 or ms > 600000:
            raise ValueError("ms must be a number of milliseconds in 0...600000")
        if first is not None and (not isinstance(first, int) or isinstance(first, bool) or first < 0):
            raise ValueError("first must be an integer >= 0")
        self.slow_seen += 1
        sleep_ms = ms if first is None or self.slow_seen <= first else 0
        interrupted = self.stop.wait(sleep_ms / 1000.0) if sleep_ms else False
        return {"status": "success", "slept_ms": 0 if interrupted else sleep_ms, "interrupted": interrupted,
                "execution": self.slow_seen}

    def m_fail(self, params):
        return {"success": False, "error": str(params.get("error", "failed on purpose"))}

    # ---- the REP side ----

    def _record(self, method, params):
        self.total += 1
        self.counts[method] = self.counts.get(method, 0) + 1
        line = json.dumps({"n": self.total, "time": now_iso(), "handler_id": self.handler_id,
                           "pid": os.getpid(), "method": method, "params": params})
        with open(self.log_path, "a") as f:  # one write per line, O_APPEND: lines never interleave
            f.write(line + "\n")

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
        fn = getattr(self, "m_" + method, None) if method in METHODS else None
        if fn is None:
            return {"success": False, "error": "Unknown method: %s" % method}, method
        self._record(method, params)
        emit("execute", method=method, n=self.total)
        try:
            result = fn(params)
        except Exception as e:  # noqa: BLE001 - a thrown error becomes an error reply, as upstream
            return {"success": False, "error": str(e)}, method
        if isinstance(result, dict):
            result.setdefault("success", True)
            return result, method
        return {"success": True, "result": result}, method

    def run(self):
        rep = self.ctx.socket(zmq.REP)
        rep.setsockopt(zmq.LINGER, 0)
        try:
            rep.bind(self.bind_address)
        except zmq.ZMQError as e:
            emit("error", what="bind %s: %s" % (self.bind_address, e))
            rep.close(linger=0)
            self.ctx.term()
            return 1
        self.address = rep.getsockopt_string(zmq.LAST_ENDPOINT)
        emit("ready", role="handler", id=self.handler_id, endpoint=self.address, pid=os.getpid(),
             server=self.server if self.register_enabled else None)
        reg = None
        if self.register_enabled:
            reg = threading.Thread(target=self.registration_loop, name="registration", daemon=True)
            reg.start()
        try:
            while not self.stop.is_set() and not self.signal_name:
                if not rep.poll(100, zmq.POLLIN):
                    continue
                frames = rep.recv_multipart()
                reply, method = self.handle(frames)
                emit("request", method=method, frames=len(frames), success=bool(reply.get("success", True)))
                rep.send_string(json.dumps(reply))
        finally:
            self.stop.set()
            if self.signal_name:
                emit("signal", signal=self.signal_name)
            if reg is not None:
                reg.join(1.0)
            self.report_offline()
            rep.close(linger=0)
            if reg is not None and reg.is_alive():
                self.ctx.destroy(linger=0)
            else:
                self.ctx.term()
        emit("stopped", clean=True)
        return 0


def main():
    handler = Handler()

    def on_signal(signum, _frame):
        # No lock and no I/O here: the interrupted main thread may hold the print lock, and a handler can be
        # entered again while it runs (a second signal): Event.set() takes the event's lock, and a peer that
        # got SIGTERM twice deadlocked on it. The main loop sees signal_name within its poll interval.
        handler.signal_name = handler.signal_name or signal.Signals(signum).name
        arm_stop_watchdog()

    install_stop_watchdog()
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)
    return handler.run()


if __name__ == "__main__":
    sys.exit(main())
