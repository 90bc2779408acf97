#!/usr/bin/python3
"""A tiny ScheduleZero handler in Python (pyzmq): the service this example package tests.

It speaks the ScheduleZero JSON protocol (one frame, UTF-8 JSON; request {"method", "params"}; reply an
object with "success", "error" when false) on a REP socket bound to $GREETER_ENDPOINT:
  ping              -> {"success": true, "message": "pong"}
  greet {name}      -> {"success": true, "greeting": "hello, NAME", "n": N, "pid": PID}
                       (N counts the greet requests this process has run: a retried request shows as N+2)
  anything else     -> {"success": false, "error": "Unknown method: ..."}
Ends cleanly within 100 ms of SIGTERM or SIGINT. Needs Debian's python3-zmq (run it with /usr/bin/python3).
"""
import json
import os
import signal
import sys

import zmq

stopping = []


def answer(frames, state):
    if len(frames) != 1:
        return {"success": False, "error": "Invalid request: multipart messages are not part of the protocol"}
    try:
        request = json.loads(frames[0].decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return {"success": False, "error": "Invalid JSON"}
    if not isinstance(request, dict) or not isinstance(request.get("method"), str):
        return {"success": False, "error": "Invalid request: missing method"}
    params = request.get("params") or {}
    if not isinstance(params, dict):
        return {"success": False, "error": "Invalid request: params must be an object"}
    method = request["method"]
    if method == "ping":
        return {"success": True, "message": "pong"}
    if method == "greet":
        state["greets"] += 1
        return {"success": True, "greeting": "hello, %s" % params.get("name", "world"), "n": state["greets"],
                "pid": os.getpid()}
    return {"success": False, "error": "Unknown method: %s" % method}


def main():
    endpoint = os.environ.get("GREETER_ENDPOINT")
    if not endpoint:
        sys.stderr.write("greeter: GREETER_ENDPOINT is not set\n")
        return 2
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda _n, _f: stopping.append(True))
    ctx = zmq.Context()
    rep = ctx.socket(zmq.REP)
    rep.setsockopt(zmq.LINGER, 0)
    rep.bind(endpoint)
    print(json.dumps({"event": "ready", "endpoint": endpoint, "pid": os.getpid()}), flush=True)
    state = {"greets": 0}
    while not stopping:
        if rep.poll(100, zmq.POLLIN):
            rep.send_string(json.dumps(answer(rep.recv_multipart(), state)))
    rep.close(linger=0)
    ctx.term()
    return 0


if __name__ == "__main__":
    sys.exit(main())
