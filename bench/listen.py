"""Opens listening TCP sockets on 127.0.0.1 for benchmarks.

Usage: listen.py FIRST LAST STEP
Listens on every STEP-th port from FIRST to LAST, prints "ready N" once all
are listening, then holds them until stdin closes.
"""
import resource
import socket
import sys

first, last, step = (int(arg) for arg in sys.argv[1:4])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
sockets = []
for port in range(first, last + 1, step):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
    except OSError as error:
        sys.exit(f"listen.py: cannot listen on 127.0.0.1:{port}: {error}")
    s.listen(64)
    sockets.append(s)
print(f"ready {len(sockets)}", flush=True)
sys.stdin.read()
