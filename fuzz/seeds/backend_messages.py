#!/usr/bin/env python3
"""Writes seed inputs for the backend_messages fuzz target (see its doc comment for the
layout): for each device, a session that sets the queues up as a frontend would (features,
memory table, one ring per queue, call and kick eventfds), starts them, reads a ring base
back and resets the owner. Run from anywhere; the seeds land in seeds/backend_messages/."""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "backend_messages")
UADDR = 0x7F00_0000_0000
MEMFD, EVENTFD = 1, 4


def msg(code, payload=b"", fds=0, reply=False):
    return bytes([code, 1 if reply else 0]) + struct.pack("<H", len(payload)) + payload + bytes([fds])


def session(kind, queues, features):
    s = bytes([kind])
    s += msg(1)                                    # GET_FEATURES
    s += msg(15)                                   # GET_PROTOCOL_FEATURES
    s += msg(16, struct.pack("<Q", 1 | 1 << 3 | 1 << 9))  # SET_PROTOCOL_FEATURES: MQ, REPLY_ACK, CONFIG
    s += msg(2, struct.pack("<Q", features))       # SET_FEATURES
    s += msg(3)                                    # SET_OWNER
    # SET_MEM_TABLE: one region of the 1 MiB memfd at guest address 0
    s += msg(5, struct.pack("<II", 1, 0) + struct.pack("<QQQQ", 0, 1 << 20, UADDR, 0), MEMFD)
    for q in range(queues):
        base = q * 0x4000
        s += msg(8, struct.pack("<II", q, 64))     # SET_VRING_NUM
        s += msg(9, struct.pack("<IIQQQQ", q, 0, UADDR + base, UADDR + base + 0x2000,
                                UADDR + base + 0x1000, 0))  # SET_VRING_ADDR
        s += msg(10, struct.pack("<II", q, 0))     # SET_VRING_BASE
        s += msg(13, struct.pack("<Q", q), EVENTFD)  # SET_VRING_CALL
        s += msg(12, struct.pack("<Q", q), EVENTFD)  # SET_VRING_KICK (starts the ring)
        s += msg(18, struct.pack("<II", q, 1))     # SET_VRING_ENABLE
    s += msg(24, struct.pack("<III", 0, 8, 0) + bytes(8), reply=True)  # GET_CONFIG
    s += msg(11, struct.pack("<II", 0, 0))         # GET_VRING_BASE (stops ring 0)
    s += msg(4)                                    # RESET_OWNER
    return s


VERSION_1, PROTOCOL_FEATURES = 1 << 32, 1 << 30
os.makedirs(OUT, exist_ok=True)
for name, kind, queues, extra in [("entropy", 0, 1, 0), ("net", 1, 5, 1 << 22 | 1 << 17), ("block", 2, 1, 0)]:
    # net: VIRTIO_NET_F_MQ (22) and CTRL_VQ (17): two pairs and the control queue
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(session(kind, queues, VERSION_1 | PROTOCOL_FEATURES | extra))
