"""A local HTTP mirror for download tests: a folder served on 127.0.0.1, so no test
reaches the network."""
import contextlib
import functools
import socket
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep request lines out of the test output
        pass


@contextlib.contextmanager
def serving(folder):
    """Yield the base URL of a server on 127.0.0.1 (a free port) serving ``folder``;
    the server is shut down on exit."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()  # polls every 20 ms, so shutdown() returns at once
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def unreachable_url():
    """A base URL on 127.0.0.1 where nothing listens (a port freed just now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"
