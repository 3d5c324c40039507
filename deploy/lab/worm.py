#!/usr/bin/python3
"""A Slapper-like worm for the lab: from SOURCE, connect to DECOY:80
and send a request (what a worm does with a host it found: a data bite),
then try DECOY:443 (moving to the next service: a port bite). The kernel's
own TCP stack does the talking.

Usage (in the lab's outside namespace; SOURCE defaults to 203.0.113.66):
    ip netns exec bwlab-out /usr/bin/python3 deploy/lab/worm.py DECOY [SOURCE]
"""
import socket
import sys

decoy = sys.argv[1]
source = sys.argv[2] if len(sys.argv) > 2 else "203.0.113.66"


def attempt(port, data):
    s = socket.socket(socket.AF_INET6 if ":" in decoy else socket.AF_INET)
    s.settimeout(2)
    s.bind((source, 0))
    try:
        s.connect((decoy, port))
        print(port, "connected", flush=True)
        if data:
            s.sendall(data)
        s.recv(100)
    except Exception as e:
        print(port, type(e).__name__, flush=True)
    finally:
        s.close()


attempt(80, b"GET / HTTP/1.0\r\n\r\n")
attempt(443, None)
