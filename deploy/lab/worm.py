#!/usr/bin/python3
"""A Slapper-like worm for the lab: from 203.0.113.66, connect to DECOY:80
and send a request (what a worm does with a host it found: a data bite),
then try DECOY:443 (moving to the next service: a port bite). The kernel's
own TCP stack does the talking.

Usage (in the lab's outside namespace):
    ip netns exec bwlab-out /usr/bin/python3 deploy/lab/worm.py DECOY
"""
import socket
import sys

decoy = sys.argv[1]


def attempt(port, data):
    s = socket.socket()
    s.settimeout(2)
    s.bind(("203.0.113.66", 0))
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
