"""A moto S3 server whose requests run one at a time.

moto checks `If-None-Match: *` / `If-Match` and then writes in two steps, so two racing
conditional PUTs can both succeed. Running every request under one process-wide mutex makes each
check-then-write atomic, which the lock tests depend on. Command line: the same as `moto_server`
(`-H HOST -p PORT`), plus `--exit-with-parent`: exit as soon as standard input reaches end of
file, i.e. when the test process that started us (and holds the other end of the pipe) exits,
however it exits.
"""
import os
import sys
import threading

from moto import server
from moto.moto_server import werkzeug_app

_one_at_a_time = threading.Lock()
_dispatch = werkzeug_app.DomainDispatcherApplication.__call__


def _serialized(self, environ, start_response):
    with _one_at_a_time:
        # Materialize the body inside the mutex: a lazily produced body would escape it.
        return list(_dispatch(self, environ, start_response))


werkzeug_app.DomainDispatcherApplication.__call__ = _serialized


def _exit_when_parent_goes():
    while sys.stdin.buffer.read(4096):
        pass
    os._exit(0)


if __name__ == "__main__":
    if "--exit-with-parent" in sys.argv:
        sys.argv.remove("--exit-with-parent")
        threading.Thread(target=_exit_when_parent_goes, daemon=True).start()
    server.main()
