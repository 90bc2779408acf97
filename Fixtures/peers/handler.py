#!/usr/bin/python3
"""A pyzmq handler written the way upstream ScheduleZero's ZMQHandlerBase works.

Usage: handler.py --id ID --server ENDPOINT

Binds a REP socket on tcp://127.0.0.1 (random port), then on one REQ socket to the server sends `ping`
and `register {handler_id, address, methods}`. Serves `ping`, `increment_counter`, `heartbeat` with
upstream's reply shapes. Prints JSON lines: a `ready` event with the bound endpoint, `registered` with the
server's reply, one `request` per request. On SIGTERM it sends `report_status offline` (bounded wait,
linger 0) and exits 0. Needs Debian's python3-zmq (run it with /usr/bin/python3).
"""
import json
import os
import signal
import sys

import zmq

METHODS = ["ping", "increment_counter", "heartbeat"]


def emit(event, **fields):
    print(json.dumps(dict(event=event, **fields)), flush=True)


def call(ctx, server, requests, timeout_ms=2000):
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server)
    replies = []
    try:
        for req in requests:
            sock.send_string(json.dumps(req))
            if not sock.poll(timeout_ms, zmq.POLLIN):
                return None
            replies.append(json.loads(sock.recv_string()))
    finally:
        sock.close(linger=0)
    return replies


def main(argv):
    handler_id, server = None, None
    while argv:
        a = argv.pop(0)
        if a == "--id":
            handler_id = argv.pop(0)
        elif a == "--server":
            server = argv.pop(0)
    if not handler_id or not server:
        print(__doc__, file=sys.stderr)
        return 2
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    ctx = zmq.Context()
    rep = ctx.socket(zmq.REP)
    rep.setsockopt(zmq.LINGER, 0)
    port = rep.bind_to_random_port("tcp://127.0.0.1")
    address = "tcp://127.0.0.1:%d" % port
    emit("ready", role="handler", id=handler_id, endpoint=address, pid=os.getpid())
    replies = call(ctx, server, [
        {"method": "ping", "params": {}},
        {"method": "register", "params": {"handler_id": handler_id, "address": address, "methods": METHODS}},
    ])
    emit("registered", replies=replies)
    counters = {}
    while not stop:
        if not rep.poll(100, zmq.POLLIN):
            continue
        raw = rep.recv_string()
        try:
            request = json.loads(raw)
        except ValueError:
            rep.send_string(json.dumps({"success": False, "error": "Invalid JSON"}))
            continue
        method = request.get("method")
        params = request.get("params", {})
        emit("request", method=method, params=params)
        if method == "ping":
            result = {"success": True, "message": "pong", "handler_id": handler_id}
        elif method == "increment_counter":
            name = params.get("counter_name", "default")
            counters[name] = counters.get(name, 0) + 1
            result = {"success": True, "status": "success", "counter": name, "value": counters[name]}
        elif method == "heartbeat":
            result = {"success": True, "status": "alive", "handler_id": handler_id}
        else:
            result = {"success": False, "error": "Unknown method: %s" % method}
        rep.send_string(json.dumps(result))
    call(ctx, server, [{"method": "report_status", "params": {"handler_id": handler_id, "status": "offline"}}], 1000)
    rep.close(linger=0)
    ctx.term()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
