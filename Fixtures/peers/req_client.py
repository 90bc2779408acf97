#!/usr/bin/python3
"""A pyzmq REQ client written the way upstream ScheduleZero's ZMQClient talks to a handler.

Usage: req_client.py ENDPOINT METHOD[:PARAMS_JSON] [METHOD[:PARAMS_JSON] ...] [--timeout-ms N] [--retries N]

For each call: send_string(json.dumps({"method", "params"})), poll with a timeout, recv_string, json.loads.
On a timeout the REQ socket is closed with linger 0 and reopened (upstream's recovery), then retried.
Prints one JSON line per call: {"method": ..., "reply": ...}. Exit 0 when every reply has success true,
1 otherwise. Needs Debian's python3-zmq (run it with /usr/bin/python3).
"""
import json
import sys

import zmq


def main(argv):
    timeout_ms, retries, calls = 2500, 3, []
    args = list(argv)
    while args:
        a = args.pop(0)
        if a == "--timeout-ms":
            timeout_ms = int(args.pop(0))
        elif a == "--retries":
            retries = int(args.pop(0))
        else:
            calls.append(a)
    if len(calls) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    endpoint, calls = calls[0], calls[1:]
    ctx = zmq.Context()
    sock = None

    def open_socket():
        s = ctx.socket(zmq.REQ)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(endpoint)
        return s

    ok = True
    try:
        sock = open_socket()
        for call in calls:
            method, _, params = call.partition(":")
            request = {"method": method, "params": json.loads(params) if params else {}}
            reply = None
            for _ in range(retries):
                sock.send_string(json.dumps(request))
                if sock.poll(timeout_ms, zmq.POLLIN):
                    reply = json.loads(sock.recv_string())
                    break
                sock.close(linger=0)
                sock = open_socket()
            print(json.dumps({"method": method, "reply": reply}), flush=True)
            if not reply or not reply.get("success", True):
                ok = False
    finally:
        if sock is not None:
            sock.close(linger=0)
        ctx.term()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
