"""What the project's foreign Python peers share: JSON-lines events on stdout, environment integers, and a
bounded graceful stop. Imported by foreign_handler.py, foreign_server.py (and, through them, deviant.py)."""
import datetime
import json
import os
import signal
import sys
import threading

MULTIPART = "Invalid request: multipart messages are not part of the protocol"

_print_lock = threading.Lock()


def emit(event, **fields):
    line = json.dumps(dict(event=event, **fields))
    with _print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def env_int(name, default):
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw.strip() else default
    except ValueError:
        emit("error", what="bad integer in %s: %r" % (name, raw))
        sys.exit(2)


def now_iso():
    return datetime.datetime.now().isoformat()


# A clean peer ends on SIGTERM in bounded time, whatever blocks its graceful stop (a context termination
# waiting for a socket another thread still holds, an HTTP shutdown waiting for a request): the signal
# handler arms an alarm, and the alarm ends the process. SIGALRM interrupts a blocking libzmq call (EINTR),
# so pyzmq runs the handler even there.
STOP_GRACE_S = env_int("SZ_STOP_GRACE_S", 5)
_forced_exit_code = [0]


def _forced_exit(_signum, _frame):
    # No lock and no buffered I/O: the interrupted thread may hold either.
    os.write(2, ("forced exit: the graceful stop did not finish within %d s\n" % STOP_GRACE_S).encode())
    os._exit(_forced_exit_code[0])


def install_stop_watchdog():
    signal.signal(signal.SIGALRM, _forced_exit)


def arm_stop_watchdog(exit_code=0):
    """From a signal handler: the process is gone within STOP_GRACE_S seconds (async-signal-safe: no lock)."""
    _forced_exit_code[0] = exit_code
    signal.alarm(max(1, STOP_GRACE_S))
