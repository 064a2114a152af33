//! Moves buffers from a driver-side queue to a device-side queue and back,
//! over mmap'd shared memory, for both ring formats, and prints what
//! happened at each step.
//!
//! Run with `cargo run -p ringwork-queue --example loopback`.

use ringwork_queue::mmap::{GuestMemoryMmap, MmapRegion};
use ringwork_queue::{
    DeviceQueue, DriverQueue, DriverQueueConfig, GuestMemory, QueueFeatures, RingFormat, Segment,
};

const GUEST_BASE: u64 = 0x4000_0000;
const DATA: u64 = GUEST_BASE + 0x10_0000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for format in [RingFormat::Split, RingFormat::Packed] {
        run(format)?;
    }
    println!("\nall buffers delivered and verified");
    Ok(())
}

fn run(format: RingFormat) -> Result<(), Box<dyn std::error::Error>> {
    // "Guest RAM": one shared mapping placed at a guest-physical address.
    let mut mem = GuestMemoryMmap::new();
    mem.add_region(GUEST_BASE, MmapRegion::anonymous(4 << 20)?)?;
    let features = QueueFeatures {
        event_idx: true,
        indirect_desc: true,
        ..Default::default()
    };
    let size = if format == RingFormat::Packed {
        96
    } else {
        128
    };
    let mut driver =
        DriverQueue::<_, (u64, String)>::new(&mem, DriverQueueConfig::new(format, size, features))?;
    let addrs = driver.addresses();
    println!("== {format} ring, {size} entries, EVENT_IDX + INDIRECT_DESC");
    println!(
        "   driver allocated: descriptors {:#x}, driver area {:#x}, device area {:#x}",
        addrs.desc, addrs.driver, addrs.device
    );
    let mut device = DeviceQueue::new(format, size, addrs, features)?;

    // The driver offers three requests: a header + payload to read, and a
    // status byte plus reply area to write (4 segments -> indirect table).
    for (i, word) in ["hello", "virtio", "queues"].iter().enumerate() {
        let base = DATA + i as u64 * 0x1000;
        let s = mem.slice(base, 0x100).ok_or("data outside memory")?;
        s.write_bytes(0, &(word.len() as u32).to_le_bytes())?;
        s.write_bytes(4, word.as_bytes())?;
        let out = [
            Segment::new(base, 4),
            Segment::new(base + 4, word.len() as u32),
        ];
        let inp = [Segment::new(base + 0x80, 32), Segment::new(base + 0xff, 1)];
        let id = driver
            .add(&out, &inp, (base, format!("request {i} ({word})")))
            .map_err(|r| r.error)?;
        println!("   driver: added {word:?} as id {id}");
    }
    println!("   driver: notify the device? {}", driver.kick_prepare()?);

    // The device pops each chain, reads it, writes an upper-case echo.
    while let Some(chain) = device.pop(&mem)? {
        let mut r = chain.reader(&mem);
        let len = u32::from_le_bytes(r.read_array::<4>()?.ok_or("short header")?);
        let mut word = vec![0u8; len as usize];
        r.read_exact(&mut word)?.ok_or("short payload")?;
        let reply = String::from_utf8_lossy(&word).to_uppercase();
        let mut w = chain.writer(&mem);
        w.write(reply.as_bytes())?;
        println!(
            "   device: chain id {} ({} segments{}), read {:?}, wrote {:?}",
            chain.id(),
            chain.segments().len(),
            if chain.is_indirect() {
                ", indirect"
            } else {
                ""
            },
            String::from_utf8_lossy(&word),
            reply
        );
        device.add_used(&mem, chain.token(), w.bytes_written())?;
    }
    println!(
        "   device: interrupt the driver? {}",
        device.needs_notification(&mem)?
    );

    // The driver gets its tokens back with the lengths written.
    while let Some(used) = driver.pop_used()? {
        let (base, name) = used.token;
        let mut reply = vec![0u8; used.len as usize];
        mem.slice(base + 0x80, reply.len())
            .ok_or("reply outside memory")?
            .read_bytes(0, &mut reply)?;
        println!(
            "   driver: {name} came back, {} bytes written: {:?}",
            used.len,
            String::from_utf8_lossy(&reply)
        );
    }
    assert_eq!(driver.outstanding(), 0);
    Ok(())
}
