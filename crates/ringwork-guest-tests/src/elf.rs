//! Just enough ELF64 (little-endian) reading for two questions: what does a
//! kernel module's `.modinfo` say, and is an executable statically linked.

/// Reads `N` bytes at `off`, if in bounds.
fn bytes<const N: usize>(data: &[u8], off: usize) -> Option<[u8; N]> {
    data.get(off..off.checked_add(N)?)?.try_into().ok()
}

fn u16_at(data: &[u8], off: usize) -> Option<usize> {
    bytes::<2>(data, off).map(|b| u16::from_le_bytes(b) as usize)
}

fn u32_at(data: &[u8], off: usize) -> Option<u32> {
    bytes::<4>(data, off).map(u32::from_le_bytes)
}

fn u64_at(data: &[u8], off: usize) -> Option<usize> {
    bytes::<8>(data, off).and_then(|b| usize::try_from(u64::from_le_bytes(b)).ok())
}

/// True for a 64-bit little-endian ELF file.
fn is_elf64le(data: &[u8]) -> bool {
    data.len() >= 64 && data[..4] == *b"\x7fELF" && data[4] == 2 && data[5] == 1
}

/// The contents of the section called `name`.
pub(crate) fn section<'a>(data: &'a [u8], name: &str) -> Option<&'a [u8]> {
    if !is_elf64le(data) {
        return None;
    }
    let shoff = u64_at(data, 0x28)?;
    let shentsize = u16_at(data, 0x3a)?;
    let shnum = u16_at(data, 0x3c)?;
    let shstrndx = u16_at(data, 0x3e)?;
    let header = |i: usize| shoff.checked_add(i.checked_mul(shentsize)?);
    let strtab_hdr = header(shstrndx)?;
    let strtab_off = u64_at(data, strtab_hdr + 24)?;
    for i in 0..shnum {
        let hdr = header(i)?;
        let name_off = strtab_off.checked_add(u32_at(data, hdr)? as usize)?;
        let rest = data.get(name_off..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        if &rest[..end] == name.as_bytes() {
            let off = u64_at(data, hdr + 24)?;
            let size = u64_at(data, hdr + 32)?;
            return data.get(off..off.checked_add(size)?);
        }
    }
    None
}

/// The value of `key` in a kernel module's `.modinfo` section
/// (NUL-separated `key=value` strings).
pub(crate) fn modinfo(module: &[u8], key: &str) -> Option<String> {
    let info = section(module, ".modinfo")?;
    info.split(|&b| b == 0).find_map(|entry| {
        let entry = std::str::from_utf8(entry).ok()?;
        entry
            .strip_prefix(key)?
            .strip_prefix('=')
            .map(str::to_string)
    })
}

/// Whether an ELF64 executable has a `PT_INTERP` program header, i.e. is
/// dynamically linked. `None` when the data is not ELF64.
pub(crate) fn has_interpreter(data: &[u8]) -> Option<bool> {
    if !is_elf64le(data) {
        return None;
    }
    let phoff = u64_at(data, 0x20)?;
    let phentsize = u16_at(data, 0x36)?;
    let phnum = u16_at(data, 0x38)?;
    const PT_INTERP: u32 = 3;
    for i in 0..phnum {
        if u32_at(data, phoff.checked_add(i.checked_mul(phentsize)?)?)? == PT_INTERP {
            return Some(true);
        }
    }
    Some(false)
}
