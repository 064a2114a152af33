//! The network driver's zero-copy API against a fake device over MMIO
//! (VIRTIO 1.4 §5.1.9): frames received in place ([`NetBuf`],
//! `recv_bufs`), read and changed through `read_buf` / `write_buf`, sent
//! back out of their own receive buffers (`send_bufs`: one transmit chain
//! per frame, each buffer one device-readable descriptor, the header
//! written over the receive header with `flags` 0, `gso_type` NONE and
//! `num_buffers` 0, §5.1.9.2.1) or given back unsent (`release_bufs`);
//! the spare receive buffers that keep the ring populated while frames
//! are held; mergeable frames spanning buffers (§5.1.9.4); a partial
//! checksum completed by the driver or requested with NEEDS_CSUM
//! (§5.1.9.2.1); a full transmitq; misuse refused with an error, never a
//! panic. Split and packed rings.

mod common;

use common::net_dev::{
    buffers_for, bytes, deliver, frame, opts, recv_all, small_buffers, Drv, NetDev, RxHdr, DST,
    RINGS,
};
use common::{block, memory, mmio, violations, with_dev};
use ringwork_driver::net::{
    complete_checksum, ones_complement_sum, BufError, NetDriver, NetOptions, RecvError, RxChecksum,
    SendError, TxChecksum,
};
use ringwork_spec::net::*;

/// Forwarding in place: the device sees exactly the received bytes
/// behind a zeroed 12-byte header (the receive header under it, with
/// `num_buffers` 1, DATA_VALID and stray offsets, is overwritten), in one
/// device-readable descriptor at the very address it filled.
#[test]
fn forward_in_place_sends_the_received_bytes_behind_a_zero_header() {
    for ring in RINGS {
        for mergeable in [true, false] {
            let mem = memory();
            let mut dev = NetDev::new(&mem);
            if !mergeable {
                dev = dev.without(&[VIRTIO_NET_F_MRG_RXBUF]);
            }
            let b = block(dev);
            let mut d: Drv = NetDriver::new(mmio(&b), &mem, opts(ring)).unwrap();
            let frames: Vec<Vec<u8>> = [60, 61, 300, 1514]
                .iter()
                .enumerate()
                .map(|(i, &len)| frame(DST, len, i as u8))
                .collect();
            for (i, f) in frames.iter().enumerate() {
                let h = if i == 1 {
                    RxHdr {
                        flags: VIRTIO_NET_HDR_F_DATA_VALID,
                        hdr_len: 0x99,
                        csum_start: 0x1234,
                        csum_offset: 0x5678,
                        ..RxHdr::default()
                    }
                } else {
                    RxHdr::default()
                };
                let used = with_dev(&b, |dev| dev.deliver(0, f, h, None)).unwrap();
                assert_eq!(used, 1);
            }
            let mut v = recv_all(&mut d, 0);
            assert_eq!(v.len(), frames.len());
            for (i, (nb, f)) in v.iter().zip(&frames).enumerate() {
                assert_eq!((nb.pair(), nb.len(), nb.is_empty()), (0, f.len(), false));
                let info = nb.info();
                assert_eq!((info.len, info.num_buffers), (f.len(), 1));
                let csum = if i == 1 {
                    RxChecksum::Valid
                } else {
                    RxChecksum::None
                };
                assert_eq!(info.csum, csum);
                assert_eq!(&bytes(&d, nb), f, "{ring:?} frame {i}");
            }
            // Spares took the held buffers' places.
            assert_eq!(d.rx_available(0), 32);
            let rx_addrs: Vec<u64> = with_dev(&b, |dev| dev.rx_used.iter().map(|u| u.0).collect());
            with_dev(&b, |dev| dev.hold_tx = true);
            assert_eq!(d.send_bufs(0, &mut v).unwrap(), frames.len());
            assert!(v.is_empty(), "sent frames leave the vector");
            with_dev(&b, |dev| {
                // Zero-copy: each transmit chain is the receive buffer the
                // device filled, header included, readable only.
                assert_eq!(dev.held_tx.len(), frames.len());
                for ((c, f), addr) in dev.held_tx.iter().zip(&frames).zip(&rx_addrs) {
                    let segs: Vec<(u64, u32)> =
                        c.segments().iter().map(|s| (s.addr, s.len)).collect();
                    assert_eq!(segs, vec![(*addr, 12 + f.len() as u32)]);
                    assert_eq!(
                        (c.readable_len(), c.writable_len()),
                        (12 + f.len() as u32, 0)
                    );
                }
                assert_eq!(dev.complete_held(0), frames.len());
                assert_eq!(dev.sent.len(), frames.len());
                for (s, f) in dev.sent.iter().zip(&frames) {
                    assert_eq!(s.pair, 0);
                    assert_eq!(s.hdr, [0u8; 12], "flags 0, gso NONE, num_buffers 0");
                    assert_eq!(&s.frame, f);
                    assert_eq!(s.lens, (12 + f.len() as u32, 0));
                }
            });
            assert_eq!(d.tx_in_flight(0), frames.len() as u16);
            assert_eq!(d.reclaim(0).unwrap(), frames.len());
            assert_eq!(d.tx_in_flight(0), 0);
            assert!(recv_all(&mut d, 0).is_empty());
            assert_eq!(d.rx_available(0), 32);
            assert_eq!(violations(&b), 0);
        }
    }
}

/// Hundreds of frames (many times the 32 entries plus 32 spares) go
/// through receive-in-place and send-in-place, spanning up to six
/// 256-byte buffers: every frame arrives byte-exact, the device never
/// runs out of buffers, and the ring is full after every receive call.
/// Completed transmits come back through the next send or `reclaim`.
#[test]
fn buffers_come_back_over_many_rounds() {
    for ring in RINGS {
        let mem = memory();
        let b = block(NetDev::new(&mem));
        let mut d: Drv = NetDriver::new(mmio(&b), &mem, small_buffers(ring)).unwrap();
        let mut expect = Vec::new();
        let mut n = 0usize;
        for round in 0..300 {
            // At most 16 buffers a round: held (16) plus sent and not yet
            // taken back (16) never exceed the 32 spares.
            let mut used = 0;
            let mut this = Vec::new();
            loop {
                let len = 60 + (n * 531 + round * 97) % 1455;
                if used + buffers_for(len, 256) > 16 {
                    break;
                }
                let f = frame(DST, len, n as u8);
                assert_eq!(deliver(&b, 0, &f), buffers_for(len, 256));
                used += buffers_for(len, 256);
                this.push(f);
                n += 1;
            }
            let mut v = recv_all(&mut d, 0);
            assert_eq!(v.len(), this.len());
            assert_eq!(d.rx_available(0), 32, "{ring:?} round {round}");
            for (nb, f) in v.iter().zip(&this) {
                assert_eq!(nb.info().num_buffers as usize, buffers_for(f.len(), 256));
                assert_eq!(&bytes(&d, nb), f);
            }
            if round % 3 == 0 {
                // Take the previous round's completions back explicitly.
                d.reclaim(0).unwrap();
            }
            assert_eq!(d.send_bufs(0, &mut v).unwrap(), this.len());
            expect.extend(this);
        }
        assert!(n > 15 * 64, "{n} frames");
        with_dev(&b, |dev| {
            assert_eq!(dev.sent.len(), expect.len());
            for (i, (s, f)) in dev.sent.iter().zip(&expect).enumerate() {
                assert_eq!((&s.hdr[..], &s.frame), (&[0u8; 12][..], f), "frame {i}");
            }
        });
        d.reclaim(0).unwrap();
        assert_eq!(d.tx_in_flight(0), 0);
        assert!(recv_all(&mut d, 0).is_empty());
        assert_eq!(d.rx_available(0), 32);
        with_dev(&b, |dev| assert_eq!(dev.rx_held(0), 32));
    }
}

/// Without spares a held frame leaves a hole in the ring until it comes
/// back: released (at the next receive call), or sent and taken back by
/// `reclaim` or the next `send_bufs`.
#[test]
fn without_spares_held_frames_leave_holes() {
    for ring in RINGS {
        let mem = memory();
        let b = block(NetDev::new(&mem));
        let mut d: Drv = NetDriver::new(
            mmio(&b),
            &mem,
            NetOptions {
                rx_spare_buffers: Some(0),
                ..opts(ring)
            },
        )
        .unwrap();
        for i in 0..5 {
            deliver(&b, 0, &frame(DST, 60, i));
        }
        let v = recv_all(&mut d, 0);
        assert_eq!(v.len(), 5);
        assert_eq!(d.rx_available(0), 27);
        with_dev(&b, |dev| assert_eq!(dev.rx_held(0), 27));
        d.release_bufs(v);
        assert_eq!(d.rx_available(0), 27, "made available at the next receive");
        assert!(recv_all(&mut d, 0).is_empty());
        assert_eq!(d.rx_available(0), 32);
        with_dev(&b, |dev| assert_eq!(dev.rx_held(0), 32));

        // Sent: back once the completion is taken, by reclaim ...
        for i in 0..3 {
            deliver(&b, 0, &frame(DST, 70, i));
        }
        let mut v = recv_all(&mut d, 0);
        assert_eq!(d.send_bufs(0, &mut v).unwrap(), 3);
        assert_eq!(d.rx_available(0), 29, "completed, not taken back yet");
        assert_eq!(d.reclaim(0).unwrap(), 3);
        assert_eq!(d.rx_available(0), 29, "made available at the next receive");
        assert!(recv_all(&mut d, 0).is_empty());
        assert_eq!(d.rx_available(0), 32);
        // ... or by the next send ...
        for i in 0..4 {
            deliver(&b, 0, &frame(DST, 80, i));
        }
        let mut v = recv_all(&mut d, 0);
        assert_eq!(d.send_bufs(0, &mut v).unwrap(), 4);
        assert_eq!(d.send_bufs(0, &mut Vec::new()).unwrap(), 0);
        assert!(recv_all(&mut d, 0).is_empty());
        assert_eq!(d.rx_available(0), 32);
        // ... or by a receive call that finds the ring short of buffers.
        for i in 0..2 {
            deliver(&b, 0, &frame(DST, 90, i));
        }
        let mut v = recv_all(&mut d, 0);
        assert_eq!(d.send_bufs(0, &mut v).unwrap(), 2);
        assert_eq!(d.rx_available(0), 30);
        assert!(recv_all(&mut d, 0).is_empty());
        assert_eq!(d.rx_available(0), 32);
        with_dev(&b, |dev| {
            assert_eq!((dev.rx_held(0), dev.sent.len()), (32, 9))
        });
    }
}

/// With the default spares (as many as entries) up to 32 held frames
/// keep the ring full; beyond that it drains, and the held frames'
/// buffers are never handed to the device meanwhile (their bytes stay).
#[test]
fn spares_keep_the_ring_full_while_frames_are_held() {
    for ring in RINGS {
        let mem = memory();
        let b = block(NetDev::new(&mem));
        let mut d: Drv = NetDriver::new(mmio(&b), &mem, opts(ring)).unwrap();
        let frames: Vec<Vec<u8>> = (0..64).map(|i| frame(DST, 100 + i, i as u8)).collect();
        let mut held = Vec::new();
        for chunk in frames.chunks(16) {
            for f in chunk {
                deliver(&b, 0, f);
            }
            held.extend(recv_all(&mut d, 0));
            let want = 64usize.saturating_sub(held.len()).min(32) as u16;
            assert_eq!(d.rx_available(0), want, "{ring:?}: {} held", held.len());
            with_dev(&b, |dev| assert_eq!(dev.rx_held(0), usize::from(want)));
        }
        assert_eq!(held.len(), 64);
        assert_eq!(
            with_dev(&b, |dev| dev.deliver(0, &frames[0], RxHdr::default(), None)),
            None,
            "no buffer left"
        );
        for (nb, f) in held.iter().zip(&frames) {
            assert_eq!(&bytes(&d, nb), f);
        }
        // Half back: the ring fills again, and new frames do not touch the
        // buffers still held.
        let rest = held.split_off(32);
        d.release_bufs(held);
        assert!(recv_all(&mut d, 0).is_empty());
        assert_eq!(d.rx_available(0), 32);
        for f in &frames[..32] {
            deliver(&b, 0, &frame(DST, f.len(), !f[20]));
        }
        let again = recv_all(&mut d, 0);
        assert_eq!(again.len(), 32);
        for (nb, f) in rest.iter().zip(&frames[32..]) {
            assert_eq!(&bytes(&d, nb), f);
        }
        d.release_bufs(rest);
        d.release_bufs(again);
        assert!(recv_all(&mut d, 0).is_empty());
        assert_eq!(d.rx_available(0), 32);
    }
}

/// A 1000-byte frame over 256-byte buffers (§5.1.9.4: four buffers, the
/// first with 244 frame bytes): reads and writes across the buffer
/// boundaries, a failed write changes nothing, and the frame goes out as
/// one chain of its four buffers holding the header and the changed frame.
#[test]
fn mergeable_frame_is_read_written_and_sent_across_buffers() {
    for ring in RINGS {
        let mem = memory();
        let b = block(NetDev::new(&mem));
        let mut d: Drv = NetDriver::new(mmio(&b), &mem, small_buffers(ring)).unwrap();
        let f = frame(DST, 1000, 9);
        assert_eq!(deliver(&b, 0, &f), 4);
        let mut v = recv_all(&mut d, 0);
        assert_eq!(v.len(), 1);
        let nb = &v[0];
        assert_eq!((nb.len(), nb.info().num_buffers), (1000, 4));
        assert_eq!(bytes(&d, nb), f);
        // Frame bytes per buffer: 244, 256, 256, 244.
        for (at, len) in [
            (240, 10),
            (243, 2),
            (499, 2),
            (755, 2),
            (200, 600),
            (999, 1),
        ] {
            let mut got = vec![0u8; len];
            d.read_buf(nb, at, &mut got).unwrap();
            assert_eq!(got, f[at..at + len], "read {at}+{len}");
        }
        for (at, &want) in f.iter().enumerate() {
            let mut one = [0u8];
            d.read_buf(nb, at, &mut one).unwrap();
            assert_eq!(one[0], want, "byte {at}");
        }
        let mut want = f.clone();
        let writes: [(usize, Vec<u8>); 5] = [
            (0, vec![2, 0, 0, 0, 0, 7, 0x52, 0x54, 0, 0xab, 0xcd, 0xef]),
            (240, vec![0xa5; 10]),
            (495, (1..=10).collect()),
            (750, (100..120).collect()),
            (990, vec![0x5a; 10]),
        ];
        for (at, w) in &writes {
            d.write_buf(nb, *at, w).unwrap();
            want[*at..*at + w.len()].copy_from_slice(w);
        }
        assert_eq!(bytes(&d, nb), want);
        // Out of range: refused before anything is written.
        assert_eq!(
            d.write_buf(nb, 995, &[0xee; 10]),
            Err(BufError::OutOfRange {
                offset: 995,
                len: 10,
                frame: 1000
            })
        );
        assert_eq!(bytes(&d, nb), want, "a refused write changed the frame");

        let rx: Vec<(u64, u32)> = with_dev(&b, |dev| dev.rx_used.clone());
        with_dev(&b, |dev| dev.hold_tx = true);
        assert_eq!(d.send_bufs(0, &mut v).unwrap(), 1);
        with_dev(&b, |dev| {
            assert_eq!(dev.held_tx.len(), 1, "one chain");
            let segs: Vec<(u64, u32)> = dev.held_tx[0]
                .segments()
                .iter()
                .map(|s| (s.addr, s.len))
                .collect();
            assert_eq!(segs, rx, "each receive buffer is one descriptor");
            assert_eq!(dev.held_tx[0].writable_len(), 0);
            dev.complete_held(0);
            assert_eq!(dev.sent.len(), 1);
            assert_eq!(dev.sent[0].hdr, [0u8; 12]);
            assert_eq!(dev.sent[0].frame, want);
            assert_eq!(dev.sent[0].lens, (1012, 0));
        });
        d.reclaim(0).unwrap();
        assert!(recv_all(&mut d, 0).is_empty());
        assert_eq!(d.rx_available(0), 32);
    }
}

/// Ranges outside the frame are refused with `OutOfRange`; frames the
/// driver does not hold are refused with `NotHeld` (nothing queued, the
/// vector untouched); bad pairs and frames the MTU does not allow are
/// refused like the copying API refuses them.
///
/// A stale handle of the *same* driver cannot be made through the public
/// API: `NetBuf` is neither `Clone` nor constructible outside the crate,
/// and `send_bufs` / `release_bufs` consume the handles they use. What is
/// reachable is another driver's handle (a driver set up again after a
/// reset is another driver too), tested here.
#[test]
fn misuse_is_refused_with_errors() {
    for ring in RINGS {
        let mem_a = memory();
        let ba = block(NetDev::new(&mem_a));
        let mut a: Drv = NetDriver::new(
            mmio(&ba),
            &mem_a,
            NetOptions {
                queue_pairs: 2,
                ..opts(ring)
            },
        )
        .unwrap();
        let mem_b = memory();
        let bb = block(NetDev::new(&mem_b));
        let mut bdrv: Drv = NetDriver::new(mmio(&bb), &mem_b, opts(ring)).unwrap();

        let f = frame(DST, 60, 1);
        deliver(&ba, 0, &f);
        let mut v = recv_all(&mut a, 0);
        let nb = &v[0];
        let oor = |offset, len| {
            Err(BufError::OutOfRange {
                offset,
                len,
                frame: 60,
            })
        };
        let mut two = [0u8; 2];
        assert_eq!(a.read_buf(nb, 59, &mut two), oor(59, 2));
        assert_eq!(a.read_buf(nb, 61, &mut []), oor(61, 0));
        assert_eq!(a.read_buf(nb, usize::MAX, &mut two), oor(usize::MAX, 2));
        assert_eq!(
            a.read_buf(nb, 60, &mut []),
            Ok(()),
            "empty range at the end"
        );
        assert_eq!(a.write_buf(nb, 58, &[1, 2, 3]), oor(58, 3));
        assert_eq!(
            a.write_buf(nb, usize::MAX - 1, &[1, 2, 3]),
            oor(usize::MAX - 1, 3)
        );
        assert_eq!(bytes(&a, nb), f, "refused writes change nothing");

        // Another driver's frame: B holds nothing.
        let not_held = |e: &BufError| matches!(e, BufError::NotHeld { pair: 0, .. });
        assert!(matches!(bdrv.send_bufs(0, &mut v), Err(SendError::Buf(ref e)) if not_held(e)));
        assert_eq!(v.len(), 1, "a refused frame stays");
        assert!(not_held(&bdrv.read_buf(&v[0], 0, &mut two).unwrap_err()));
        assert!(not_held(&bdrv.write_buf(&v[0], 0, &two).unwrap_err()));
        with_dev(&bb, |dev| assert!(dev.sent.is_empty()));
        // ... and B holding a frame in the same buffer does not make A's
        // handle B's (each driver stamps its own handles).
        deliver(&bb, 0, &frame(DST, 60, 9));
        let mut vb = recv_all(&mut bdrv, 0);
        assert_eq!(vb.len(), 1);
        assert!(matches!(bdrv.send_bufs(0, &mut v), Err(SendError::Buf(ref e)) if not_held(e)));
        assert_eq!(bdrv.send_bufs(0, &mut vb).unwrap(), 1);
        // A's own driver sends it fine.
        assert_eq!(a.send_bufs(0, &mut v).unwrap(), 1);
        with_dev(&ba, |dev| assert_eq!(dev.sent[0].frame, f));

        // A frame of pair 1, which B does not have; it may go out on A's
        // pair 0, and its buffer returns to receiveq 1.
        let f1 = frame(DST, 90, 2);
        deliver(&ba, 1, &f1);
        let mut v = Vec::new();
        assert_eq!(a.recv_bufs(1, 8, &mut v).unwrap(), 1);
        assert_eq!(v[0].pair(), 1);
        assert!(matches!(
            bdrv.send_bufs(0, &mut v),
            Err(SendError::Buf(BufError::NotHeld { pair: 1, .. }))
        ));
        bdrv.release_bufs(std::mem::take(&mut v).into_iter().take(0));
        assert_eq!(
            a.send_bufs(2, &mut v),
            Err(SendError::NoSuchPair { pair: 2, pairs: 2 })
        );
        let mut v1 = Vec::new();
        deliver(&ba, 1, &f1);
        a.recv_bufs(1, 8, &mut v1).unwrap();
        assert_eq!(
            a.send_bufs(1, &mut v1),
            Err(SendError::PairNotActive { pair: 1, active: 1 })
        );
        assert_eq!(v1.len(), 1);
        assert_eq!(a.send_bufs(0, &mut v1).unwrap(), 1);
        a.reclaim(0).unwrap();
        assert!(a.recv_bufs(1, 8, &mut Vec::new()).is_ok());
        assert_eq!(a.rx_available(1), 32, "back on receiveq 1");
        with_dev(&ba, |dev| {
            assert_eq!((dev.sent[1].pair, &dev.sent[1].frame), (0, &f1));
        });
        assert_eq!(
            a.recv_bufs(5, 8, &mut Vec::new()),
            Err(RecvError::NoSuchPair { pair: 5, pairs: 2 })
        );

        // B releasing A's frame skips it; B goes on working.
        deliver(&ba, 0, &f);
        let foreign = recv_all(&mut a, 0);
        bdrv.release_bufs(foreign);
        assert!(recv_all(&mut bdrv, 0).is_empty());
        assert_eq!(bdrv.rx_available(0), 32);
        deliver(&bb, 0, &f);
        let mut own = recv_all(&mut bdrv, 0);
        assert_eq!(bdrv.send_bufs(0, &mut own).unwrap(), 1);
        with_dev(&bb, |dev| assert_eq!(dev.sent[1].frame, f));

        // Lengths (a hostile device may deliver them): too short, too
        // long for the MTU; the frames before a refused one go out.
        let mut tagged = frame(DST, 1518, 5);
        tagged[12..14].copy_from_slice(&[0x81, 0x00]);
        for g in [
            frame(DST, 60, 3),
            vec![0xff; 10],
            frame(DST, 1515, 4),
            tagged.clone(),
        ] {
            deliver(&ba, 0, &g);
        }
        let mut v = recv_all(&mut a, 0);
        let sent = with_dev(&ba, |dev| dev.sent.len());
        assert_eq!(
            a.send_bufs(0, &mut v),
            Err(SendError::TooShort { len: 10, min: 14 })
        );
        assert_eq!(v.len(), 3, "the first was sent");
        let short = v.remove(0);
        assert_eq!(
            a.send_bufs(0, &mut v),
            Err(SendError::TooLong {
                len: 1515,
                max: 1514
            })
        );
        let long = v.remove(0);
        assert_eq!(
            a.send_bufs(0, &mut v).unwrap(),
            1,
            "a tagged frame may be 1518"
        );
        with_dev(&ba, |dev| {
            assert_eq!(dev.sent.len(), sent + 2);
            assert_eq!(dev.sent[sent + 1].frame, tagged);
        });
        a.release_bufs([short, long]);
        a.reclaim(0).unwrap();
        assert!(recv_all(&mut a, 0).is_empty());
        assert_eq!(a.rx_available(0), 32);
        assert_eq!((violations(&ba), violations(&bb)), (0, 0));
    }
}

/// `len` bytes of frame whose checksum field (at `c.start + c.offset`)
/// holds a pseudo-header sum.
fn partial_frame(len: usize, c: TxChecksum, seed: u8) -> Vec<u8> {
    let mut f = frame(DST, len, seed);
    let at = usize::from(c.start) + usize::from(c.offset);
    f[at..at + 2].copy_from_slice(&[0x12, 0x34]);
    f
}

/// `f` with its checksum completed the way the copying API does.
fn completed(f: &[u8], c: TxChecksum) -> Vec<u8> {
    let mut done = f.to_vec();
    let at = usize::from(c.start) + usize::from(c.offset);
    done[at..at + 2].copy_from_slice(&complete_checksum(f, c).unwrap());
    // With the pseudo-header sum added back the range sums to 0xffff.
    let sum = u32::from(ones_complement_sum(&done[usize::from(c.start)..])) + 0x1234;
    assert_eq!((sum & 0xffff) + (sum >> 16), 0xffff);
    done
}

/// A frame received with NEEDS_CSUM (GUEST_CSUM) and forwarded:
/// completed by the driver without VIRTIO_NET_F_CSUM (flags 0), passed on
/// with NEEDS_CSUM and the same offsets with it (§5.1.9.2.1). With
/// 256-byte buffers the checksum field straddles the first boundary.
#[test]
fn partial_checksum_is_completed_or_requested() {
    for ring in RINGS {
        for offload in [false, true] {
            for buf_len in [2048u32, 256] {
                let mem = memory();
                let mut dev = NetDev::new(&mem);
                if !offload {
                    dev = dev.without(&[VIRTIO_NET_F_CSUM]);
                }
                let b = block(dev);
                let mut d: Drv = NetDriver::new(
                    mmio(&b),
                    &mem,
                    NetOptions {
                        rx_buffer_len: buf_len,
                        ..opts(ring)
                    },
                )
                .unwrap();
                assert!(d.features().contains(VIRTIO_NET_F_GUEST_CSUM));
                assert_eq!(d.features().contains(VIRTIO_NET_F_CSUM), offload);
                // 244 frame bytes in a first 256-byte buffer: the field
                // at 243..245 spans two (an even offset from the start,
                // like any real checksum field).
                let c = if buf_len == 256 {
                    TxChecksum {
                        start: 35,
                        offset: 208,
                    }
                } else {
                    TxChecksum {
                        start: 34,
                        offset: 6,
                    }
                };
                let f = partial_frame(300, c, 3);
                let h = RxHdr {
                    flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
                    csum_start: c.start,
                    csum_offset: c.offset,
                    ..RxHdr::default()
                };
                with_dev(&b, |dev| dev.deliver(0, &f, h, None)).unwrap();
                let mut v = recv_all(&mut d, 0);
                assert_eq!(v[0].info().csum, RxChecksum::Partial(c));
                assert_eq!(d.send_bufs(0, &mut v).unwrap(), 1);
                with_dev(&b, |dev| {
                    let s = &dev.sent[0];
                    if offload {
                        let [s0, s1] = c.start.to_le_bytes();
                        let [o0, o1] = c.offset.to_le_bytes();
                        assert_eq!(s.hdr, [1, 0, 0, 0, 0, 0, s0, s1, o0, o1, 0, 0]);
                        assert_eq!(s.frame, f, "left to the device");
                    } else {
                        assert_eq!(s.hdr, [0u8; 12], "flags 0 without CSUM");
                        assert_eq!(s.frame, completed(&f, c));
                    }
                });
            }
        }
    }
}

/// More frames than the transmitq has room for: as many as fit are
/// queued and removed from the front, the rest stay in order and can be
/// released (their buffers return). In-place frames count as in flight,
/// and the copying `send` takes their completions back on the way.
#[test]
fn a_full_transmitq_keeps_the_rest() {
    for ring in RINGS {
        let mem = memory();
        let b = block(NetDev::new(&mem));
        let mut d: Drv = NetDriver::new(mmio(&b), &mem, opts(ring)).unwrap();
        with_dev(&b, |dev| dev.hold_tx = true);
        let frames: Vec<Vec<u8>> = (0..40).map(|i| frame(DST, 60 + i, i as u8)).collect();
        let mut v = Vec::new();
        for chunk in frames.chunks(20) {
            for f in chunk {
                deliver(&b, 0, f);
            }
            v.extend(recv_all(&mut d, 0));
        }
        assert_eq!(d.send_bufs(0, &mut v).unwrap(), 32);
        assert_eq!(v.len(), 8);
        for (nb, f) in v.iter().zip(&frames[32..]) {
            assert_eq!(&bytes(&d, nb), f, "the rest, in order");
        }
        assert_eq!(d.send_bufs(0, &mut v).unwrap(), 0, "still full");
        assert_eq!(v.len(), 8);
        assert_eq!((d.tx_in_flight(0), d.tx_free(0)), (32, 0));
        assert_eq!(
            d.send(0, &frames[0], None),
            Err(SendError::QueueFull { pair: 0 })
        );
        d.release_bufs(v);
        assert!(recv_all(&mut d, 0).is_empty());
        assert_eq!(d.rx_available(0), 32);
        with_dev(&b, |dev| {
            assert_eq!(dev.complete_held(0), 32);
            let got: Vec<_> = dev.sent.iter().map(|s| s.frame.clone()).collect();
            assert_eq!(got, frames[..32]);
        });
        // Completed: the copying send takes them back on its way.
        d.send(0, &frames[1], None).unwrap();
        assert_eq!(d.tx_in_flight(0), 1);
        with_dev(&b, |dev| {
            dev.complete_held(0);
            assert_eq!(dev.sent.last().unwrap().frame, frames[1]);
        });
        assert_eq!(d.reclaim(0).unwrap(), 1);
        assert_eq!((d.tx_in_flight(0), d.tx_free(0)), (0, 32));
        assert!(recv_all(&mut d, 0).is_empty());
        assert_eq!(d.rx_available(0), 32);
        // Every buffer is back: 64 frames can be held (ring and spares).
        let mut held = Vec::new();
        for chunk in frames
            .iter()
            .chain(&frames[..24])
            .collect::<Vec<_>>()
            .chunks(32)
        {
            for f in chunk {
                deliver(&b, 0, f);
            }
            held.extend(recv_all(&mut d, 0));
        }
        assert_eq!(held.len(), 64);
        assert_eq!(d.rx_available(0), 0);
        d.release_bufs(held);
        assert_eq!(violations(&b), 0);
    }
}

/// Four-buffer frames take four descriptors each: a 32-entry transmitq
/// takes eight.
#[test]
fn a_full_transmitq_with_mergeable_frames() {
    for ring in RINGS {
        let mem = memory();
        let b = block(NetDev::new(&mem));
        let mut d: Drv = NetDriver::new(mmio(&b), &mem, small_buffers(ring)).unwrap();
        with_dev(&b, |dev| dev.hold_tx = true);
        let frames: Vec<Vec<u8>> = (0..10).map(|i| frame(DST, 1000, i as u8)).collect();
        let mut v = Vec::new();
        for chunk in frames.chunks(5) {
            for f in chunk {
                assert_eq!(deliver(&b, 0, f), 4);
            }
            v.extend(recv_all(&mut d, 0));
        }
        assert_eq!(d.send_bufs(0, &mut v).unwrap(), 8);
        assert_eq!(v.len(), 2);
        assert_eq!(
            (bytes(&d, &v[0]), bytes(&d, &v[1])),
            (frames[8].clone(), frames[9].clone())
        );
        assert_eq!(d.tx_in_flight(0), 8);
        with_dev(&b, |dev| {
            assert_eq!(dev.complete_held(0), 8);
            let got: Vec<_> = dev.sent.iter().map(|s| s.frame.clone()).collect();
            assert_eq!(got, frames[..8]);
        });
        assert_eq!(d.send_bufs(0, &mut v).unwrap(), 2);
        with_dev(&b, |dev| {
            dev.complete_held(0);
            assert_eq!(dev.sent.len(), 10);
            assert_eq!(dev.sent[9].frame, frames[9]);
        });
        d.reclaim(0).unwrap();
        assert!(recv_all(&mut d, 0).is_empty());
        assert_eq!(d.rx_available(0), 32);
    }
}

/// A partial checksum the driver completed for a frame the full
/// transmitq then refused is still right when the frame goes out later
/// (completing it twice would undo it).
#[test]
fn a_completed_checksum_survives_a_full_transmitq() {
    for ring in RINGS {
        let mem = memory();
        let b = block(NetDev::new(&mem).without(&[VIRTIO_NET_F_CSUM]));
        let mut d: Drv = NetDriver::new(mmio(&b), &mem, opts(ring)).unwrap();
        with_dev(&b, |dev| dev.hold_tx = true);
        let c = TxChecksum {
            start: 34,
            offset: 6,
        };
        let f = partial_frame(200, c, 7);
        let h = RxHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            csum_start: c.start,
            csum_offset: c.offset,
            ..RxHdr::default()
        };
        let mut v = Vec::new();
        for i in 0..31 {
            deliver(&b, 0, &frame(DST, 60, i));
        }
        v.extend(recv_all(&mut d, 0));
        for _ in 0..2 {
            with_dev(&b, |dev| dev.deliver(0, &f, h, None)).unwrap();
        }
        v.extend(recv_all(&mut d, 0));
        assert_eq!(v.len(), 33);
        assert_eq!(d.send_bufs(0, &mut v).unwrap(), 32);
        assert_eq!(v.len(), 1);
        assert_eq!(
            v[0].info().csum,
            RxChecksum::Valid,
            "completed in the buffers before the queue refused it"
        );
        with_dev(&b, |dev| dev.complete_held(0));
        assert_eq!(d.send_bufs(0, &mut v).unwrap(), 1);
        with_dev(&b, |dev| {
            dev.complete_held(0);
            assert_eq!(dev.sent.len(), 33);
            let want = completed(&f, c);
            assert_eq!(dev.sent[31].frame, want);
            assert_eq!(
                dev.sent[32].frame, want,
                "completed once, sent after a full queue"
            );
        });
    }
}
