"""GET /healthCheck over /run/opentokend/api.sock, run inside the test containers
(systemd/runtime-test.sh, systemd/package-test.sh): prints the status line and the body, or
CONNECT-ERROR <errno> <text> (exit 3) when the socket refuses the caller."""
import socket
import sys

s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(20)
try:
    s.connect("/run/opentokend/api.sock")
except OSError as e:
    print("CONNECT-ERROR", e.errno, e.strerror)
    sys.exit(3)
s.sendall(b"GET /healthCheck HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
data = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    data += b
print(data.split(b"\r\n", 1)[0].decode(errors="replace"))
print(data.rsplit(b"\r\n\r\n", 1)[-1].decode(errors="replace"))
