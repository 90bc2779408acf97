#!/usr/bin/python3
"""A ScheduleZero peer with ONE deliberate deviation from the wire, for the harness's own tests.

Usage: deviant.py DEVIATION   (environment as foreign_handler.py / foreign_server.py)

It is foreign_handler.py or foreign_server.py (imported, so everything else is the clean peer) with one change:
  multipart-per-frame      handler: a multipart request is answered frame by frame, one reply each (as upstream)
  register-without-params  server: `register` with no params at all is accepted and records a null entry (as upstream)
  no-success               handler: success replies come without their `success` key (error replies keep it)
  ignore-sigterm           handler: SIGTERM is ignored (the governor must kill it at its stop timeout)
  exit1-on-sigterm         server: exits with code 1 on SIGTERM (as upstream's server)
  shared-state             handler: increment_counter keeps its counters in $SZ_SHARED_STATE (default
                           ./state.json), rewritten in place, not atomically, on every call: replicas sharing the
                           file corrupt each other's replies under concurrent load (as upstream's test handler)
"""
import json
import os
import signal
import sys
import time

sys.dont_write_bytecode = True  # importing the clean peers must leave no __pycache__ in Fixtures/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

DEVIATIONS = ["multipart-per-frame", "register-without-params", "no-success", "ignore-sigterm",
              "exit1-on-sigterm", "shared-state"]


def handler_main(deviation):
    import zmq
    import foreign_handler as fh

    class Deviant(fh.Handler):
        def handle(self, frames):
            if deviation == "multipart-per-frame" and len(frames) > 1:
                return [fh.Handler.handle(self, [f])[0] for f in frames], None
            reply, method = fh.Handler.handle(self, frames)
            if deviation == "no-success" and isinstance(reply, dict) and reply.get("success") is True:
                del reply["success"]  # a dict result sent as it is: `success` is not added
            return reply, method

        def m_increment_counter(self, params):
            if deviation != "shared-state":
                return fh.Handler.m_increment_counter(self, params)
            path = os.environ.get("SZ_SHARED_STATE") or os.path.abspath("state.json")
            name = str(params.get("counter_name", "default"))
            try:
                with open(path) as f:
                    text = f.read()
                state = json.loads(text) if text else {}
            except FileNotFoundError:
                state = {}
            value = int(state.get(name, 0)) + 1
            state[name] = value
            with open(path, "w") as f:  # truncate, then write in pieces: another replica reads it half written
                body = json.dumps(state)
                for i in range(0, len(body), 4):
                    f.write(body[i:i + 4])
                    f.flush()
                    time.sleep(0.0005)
            return {"status": "success", "counter": name, "value": value}

        def run(self):
            if deviation != "multipart-per-frame":
                return fh.Handler.run(self)
            # A ROUTER in REP's place, so that one request can get several replies (what upstream's loop does).
            router = self.ctx.socket(zmq.ROUTER)
            router.setsockopt(zmq.LINGER, 0)
            router.bind(self.bind_address)
            self.address = router.getsockopt_string(zmq.LAST_ENDPOINT)
            fh.emit("ready", role="handler", id=self.handler_id, endpoint=self.address, pid=os.getpid(), server=None)
            try:
                while not self.stop.is_set() and not self.signal_name:
                    if not router.poll(100, zmq.POLLIN):
                        continue
                    parts = router.recv_multipart()
                    i = parts.index(b"") if b"" in parts else 0
                    envelope, frames = parts[:i + 1], parts[i + 1:]
                    replies, method = self.handle(frames)
                    for reply in (replies if isinstance(replies, list) else [replies]):
                        router.send_multipart(envelope + [json.dumps(reply).encode()])
            finally:
                router.close(linger=0)
                self.ctx.term()
            fh.emit("stopped", clean=True)
            return 0

    handler = Deviant()

    def on_signal(signum, _frame):  # no lock here (see foreign_handler.py): the loop sees signal_name
        handler.signal_name = handler.signal_name or signal.Signals(signum).name
        fh.arm_stop_watchdog()

    fh.install_stop_watchdog()
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)
    if deviation == "ignore-sigterm":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return handler.run()


def server_main(deviation):
    import foreign_server as fs

    class Deviant(fs.Server):
        def handle(self, frames):
            if deviation == "register-without-params" and len(frames) == 1:
                try:
                    request = json.loads(frames[0].decode("utf-8"))
                except (ValueError, UnicodeDecodeError):
                    request = None
                if isinstance(request, dict) and request.get("method") == "register" and "params" not in request:
                    fs.emit("register", handler_id=None, address=None, status="registered", methods=[])
                    return {"success": True, "handler_id": None, "address": None, "status": "registered", "methods": [],
                            "message": "Handler 'None' registered successfully"}, "register"
            return fs.Server.handle(self, frames)

    server = Deviant()

    def on_signal(signum, _frame):  # no lock here (see foreign_handler.py): the loop sees signal_name
        server.signal_name = server.signal_name or signal.Signals(signum).name
        fs.arm_stop_watchdog(1 if deviation == "exit1-on-sigterm" and signum == signal.SIGTERM else 0)

    fs.install_stop_watchdog()
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)
    code = server.run()
    if deviation == "exit1-on-sigterm" and server.signal_name == "SIGTERM":
        return 1
    return code


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in DEVIATIONS:
        sys.stderr.write("usage: deviant.py %s\n" % "|".join(DEVIATIONS))
        return 2
    deviation = sys.argv[1]
    if deviation in ("register-without-params", "exit1-on-sigterm"):
        return server_main(deviation)
    return handler_main(deviation)


if __name__ == "__main__":
    sys.exit(main())
