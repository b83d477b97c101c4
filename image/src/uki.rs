//! Unified kernel images (the UAPI group's UKI specification): Debian's systemd stub
//! (`linuxx64.efi.stub` from systemd-boot-efi) with the kernel, the initramfs, the command line
//! and the os-release appended as PE sections, as `ukify` or `objcopy --add-section` would:
//!
//! ```text
//! .osrel    ID=hermes, VERSION_ID=<version>: systemd-boot's title and sort order
//! .cmdline  the kernel command line
//! .uname    the kernel release (`6.1.0-56-amd64`)
//! .linux    vmlinuz
//! .initrd   the initramfs
//! ```
//!
//! What it is not: a PE linker. It appends initialised-data sections to a finished image and
//! fixes the headers (section count, SizeOfImage, SizeOfInitializedData, checksum); it does not
//! move the image's own sections, so the section table must fit in the existing headers.
//!
//! Invariants: new sections start after every existing one, their virtual addresses aligned to
//! the image's SectionAlignment (and to at least 4 KiB, a page) and their file data to its
//! FileAlignment; SizeOfImage covers them; a stub without room in its headers for the new
//! section headers is refused, never overwritten. The stub's COFF symbol table (debug data,
//! deprecated for images) is dropped, as `objcopy --strip-debug` would. The output is a pure
//! function of the inputs.

pub const IMAGE_SCN_CNT_INITIALIZED_DATA: u32 = 0x0000_0040;
pub const IMAGE_SCN_MEM_READ: u32 = 0x4000_0000;
const PE32_PLUS: u16 = 0x20B;

/// Why a UKI cannot be made from these inputs.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UkiError {
    #[error("not a PE32+ image: {0}")]
    NotPe(&'static str),
    #[error("the stub's headers have room for {have} more section headers; {need} are needed")]
    NoRoom { need: usize, have: usize },
    #[error("the stub already has a section `{0}`")]
    Exists(String),
    #[error("section name `{0}` is longer than 8 bytes")]
    LongName(String),
    #[error("the stub's section names use its COFF string table; cannot drop it")]
    LongNamesInStub,
    #[error("the image would pass PE's 4 GiB limit")]
    TooLarge,
}

/// One section header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub virtual_size: u32,
    pub virtual_address: u32,
    pub raw_size: u32,
    pub raw_offset: u32,
    pub characteristics: u32,
}

/// The header fields a UKI touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeInfo {
    /// Offset of the COFF header (after `PE\0\0`).
    pub coff: usize,
    /// Offset of the optional header.
    pub optional: usize,
    pub section_alignment: u32,
    pub file_alignment: u32,
    pub size_of_image: u32,
    pub size_of_headers: u32,
    pub checksum: u32,
    pub symbol_table: u32,
    pub sections: Vec<Section>,
    /// Offset of the section table.
    pub table: usize,
}

fn u16_at(b: &[u8], o: usize) -> Result<u16, UkiError> {
    b.get(o..o + 2).map(|s| u16::from_le_bytes([s[0], s[1]])).ok_or(UkiError::NotPe("truncated"))
}

fn u32_at(b: &[u8], o: usize) -> Result<u32, UkiError> {
    b.get(o..o + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]])).ok_or(UkiError::NotPe("truncated"))
}

fn align(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

/// Reads the headers of a PE32+ image (bounds-checked; any inconsistency is an error).
pub fn parse(pe: &[u8]) -> Result<PeInfo, UkiError> {
    if pe.get(..2) != Some(b"MZ") {
        return Err(UkiError::NotPe("no MZ header"));
    }
    let lfanew = u32_at(pe, 0x3C)? as usize;
    if pe.get(lfanew..lfanew + 4) != Some(b"PE\0\0") {
        return Err(UkiError::NotPe("no PE signature"));
    }
    let coff = lfanew + 4;
    let count = u16_at(pe, coff + 2)? as usize;
    let symbol_table = u32_at(pe, coff + 8)?;
    let opt_size = u16_at(pe, coff + 16)? as usize;
    let optional = coff + 20;
    if u16_at(pe, optional)? != PE32_PLUS || opt_size < 112 {
        return Err(UkiError::NotPe("not a PE32+ optional header"));
    }
    let section_alignment = u32_at(pe, optional + 32)?;
    let file_alignment = u32_at(pe, optional + 36)?;
    if !section_alignment.is_power_of_two() || !file_alignment.is_power_of_two() {
        return Err(UkiError::NotPe("alignments are not powers of two"));
    }
    let table = optional + opt_size;
    let mut sections = Vec::with_capacity(count);
    for i in 0..count {
        let h = table + 40 * i;
        let raw = pe.get(h..h + 40).ok_or(UkiError::NotPe("truncated section table"))?;
        let name = String::from_utf8_lossy(&raw[..8]).trim_end_matches('\0').to_string();
        let s = Section {
            name,
            virtual_size: u32_at(raw, 8)?,
            virtual_address: u32_at(raw, 12)?,
            raw_size: u32_at(raw, 16)?,
            raw_offset: u32_at(raw, 20)?,
            characteristics: u32_at(raw, 36)?,
        };
        if s.raw_size > 0 && (s.raw_offset as usize).saturating_add(s.raw_size as usize) > pe.len() {
            return Err(UkiError::NotPe("a section's data is past the end of the file"));
        }
        sections.push(s);
    }
    Ok(PeInfo {
        coff,
        optional,
        section_alignment,
        file_alignment,
        size_of_image: u32_at(pe, optional + 56)?,
        size_of_headers: u32_at(pe, optional + 60)?,
        checksum: u32_at(pe, optional + 64)?,
        symbol_table,
        sections,
        table,
    })
}

/// The data of section `name` (without file-alignment padding), if the image has it.
pub fn section_data<'a>(pe: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let info = parse(pe).ok()?;
    let s = info.sections.iter().find(|s| s.name == name)?;
    let len = s.virtual_size.min(s.raw_size) as usize;
    pe.get(s.raw_offset as usize..s.raw_offset as usize + len)
}

/// The PE checksum (as `imagehlp`'s CheckSumMappedFile): 16-bit one's-complement-style sum of
/// the file with the checksum field taken as zero, plus the file length.
pub fn pe_checksum(pe: &[u8], checksum_offset: usize) -> u32 {
    let mut sum: u64 = 0;
    for (i, chunk) in pe.chunks(2).enumerate() {
        let o = i * 2;
        if o == checksum_offset || o == checksum_offset + 2 {
            continue;
        }
        let w = u64::from(chunk[0]) | (u64::from(*chunk.get(1).unwrap_or(&0)) << 8);
        sum += w;
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    sum = (sum & 0xFFFF) + (sum >> 16);
    (sum as u32).wrapping_add(pe.len() as u32)
}

/// `stub` with `sections` appended, in order, as read-only initialised data.
pub fn add_sections(stub: &[u8], sections: &[(&str, &[u8])]) -> Result<Vec<u8>, UkiError> {
    let info = parse(stub)?;
    for (name, _) in sections {
        if name.len() > 8 {
            return Err(UkiError::LongName((*name).to_string()));
        }
        if info.sections.iter().any(|s| s.name == *name) {
            return Err(UkiError::Exists((*name).to_string()));
        }
    }
    // Room for the new headers: up to SizeOfHeaders and before any section's data.
    let first_data = info.sections.iter().filter(|s| s.raw_size > 0).map(|s| s.raw_offset).min().unwrap_or(u32::MAX);
    let limit = (info.size_of_headers.min(first_data)) as usize;
    let table_end = info.table + 40 * info.sections.len();
    let have = limit.saturating_sub(table_end) / 40;
    if have < sections.len() {
        return Err(UkiError::NoRoom { need: sections.len(), have });
    }
    if info.sections.iter().any(|s| s.name.starts_with('/')) && info.symbol_table != 0 {
        return Err(UkiError::LongNamesInStub);
    }
    // Everything the sections hold; past it sit only the COFF symbols, which are dropped.
    let data_end = info
        .sections
        .iter()
        .map(|s| u64::from(s.raw_offset) + u64::from(s.raw_size))
        .max()
        .unwrap_or(u64::from(info.size_of_headers))
        .max(u64::from(info.size_of_headers));
    let mut out = stub.get(..data_end as usize).ok_or(UkiError::NotPe("truncated"))?.to_vec();
    if info.symbol_table != 0 {
        out[info.coff + 8..info.coff + 16].fill(0);
    }
    let fa = u64::from(info.file_alignment);
    let va_align = u64::from(info.section_alignment).max(4096);
    let mut va = info
        .sections
        .iter()
        .map(|s| u64::from(s.virtual_address) + u64::from(s.virtual_size.max(s.raw_size)))
        .max()
        .unwrap_or(u64::from(info.size_of_image))
        .max(u64::from(info.size_of_image));
    let mut init_data = u64::from(u32_at(stub, info.optional + 8)?);
    for (i, (name, data)) in sections.iter().enumerate() {
        va = align(va, va_align);
        let raw_offset = align(out.len() as u64, fa);
        let raw_size = align(data.len() as u64, fa);
        if va + data.len() as u64 > u64::from(u32::MAX) || raw_offset + raw_size > u64::from(u32::MAX) {
            return Err(UkiError::TooLarge);
        }
        out.resize(raw_offset as usize, 0);
        out.extend_from_slice(data);
        out.resize((raw_offset + raw_size) as usize, 0);
        let mut h = [0u8; 40];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[8..12].copy_from_slice(&(data.len() as u32).to_le_bytes());
        h[12..16].copy_from_slice(&(va as u32).to_le_bytes());
        h[16..20].copy_from_slice(&(raw_size as u32).to_le_bytes());
        h[20..24].copy_from_slice(&(raw_offset as u32).to_le_bytes());
        h[36..40].copy_from_slice(&(IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ).to_le_bytes());
        let at = table_end + 40 * i;
        out[at..at + 40].copy_from_slice(&h);
        va += data.len() as u64;
        init_data += raw_size;
    }
    let count = (info.sections.len() + sections.len()) as u16;
    out[info.coff + 2..info.coff + 4].copy_from_slice(&count.to_le_bytes());
    let size_of_image = align(va, u64::from(info.section_alignment));
    if size_of_image > u64::from(u32::MAX) {
        return Err(UkiError::TooLarge);
    }
    out[info.optional + 56..info.optional + 60].copy_from_slice(&(size_of_image as u32).to_le_bytes());
    let init_data = u32::try_from(init_data).map_err(|_| UkiError::TooLarge)?;
    out[info.optional + 8..info.optional + 12].copy_from_slice(&init_data.to_le_bytes());
    let ck = info.optional + 64;
    out[ck..ck + 4].fill(0);
    let sum = pe_checksum(&out, ck);
    out[ck..ck + 4].copy_from_slice(&sum.to_le_bytes());
    Ok(out)
}

/// What goes into one UKI.
#[derive(Debug, Clone)]
pub struct UkiInputs<'a> {
    /// `linuxx64.efi.stub`.
    pub stub: &'a [u8],
    /// The firmware version (`0.1.0`): `.osrel`'s `VERSION_ID`, which systemd-boot sorts by.
    pub version: &'a str,
    pub cmdline: &'a str,
    /// The kernel release.
    pub uname: &'a str,
    pub linux: &'a [u8],
    pub initrd: &'a [u8],
}

/// The `.osrel` text of a Hermes UKI.
pub fn os_release(version: &str) -> String {
    format!("NAME=Hermes\nID=hermes\nPRETTY_NAME=\"Hermes mail appliance {version}\"\nVERSION_ID={version}\n")
}

/// Builds a UKI.
pub fn build(i: &UkiInputs<'_>) -> Result<Vec<u8>, UkiError> {
    let osrel = os_release(i.version);
    let cmdline = format!("{}\n", i.cmdline.trim());
    let uname = format!("{}\n", i.uname.trim());
    add_sections(
        i.stub,
        &[
            (".osrel", osrel.as_bytes()),
            (".cmdline", cmdline.as_bytes()),
            (".uname", uname.as_bytes()),
            (".linux", i.linux),
            (".initrd", i.initrd),
        ],
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    /// A minimal PE32+ image: headers of `size_of_headers`, one `.text` section.
    fn tiny_pe(size_of_headers: u32, section_alignment: u32, with_symbols: bool) -> Vec<u8> {
        let mut pe = vec![0u8; size_of_headers as usize];
        pe[0..2].copy_from_slice(b"MZ");
        pe[0x3C..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        pe[0x80..0x84].copy_from_slice(b"PE\0\0");
        let coff = 0x84;
        pe[coff..coff + 2].copy_from_slice(&0x8664u16.to_le_bytes());
        pe[coff + 2..coff + 4].copy_from_slice(&1u16.to_le_bytes());
        pe[coff + 16..coff + 18].copy_from_slice(&240u16.to_le_bytes());
        let opt = coff + 20;
        pe[opt..opt + 2].copy_from_slice(&PE32_PLUS.to_le_bytes());
        pe[opt + 32..opt + 36].copy_from_slice(&section_alignment.to_le_bytes());
        pe[opt + 36..opt + 40].copy_from_slice(&0x200u32.to_le_bytes());
        pe[opt + 56..opt + 60].copy_from_slice(&(section_alignment * 2).to_le_bytes());
        pe[opt + 60..opt + 64].copy_from_slice(&size_of_headers.to_le_bytes());
        let t = opt + 240;
        pe[t..t + 5].copy_from_slice(b".text");
        pe[t + 8..t + 12].copy_from_slice(&0x10u32.to_le_bytes());
        pe[t + 12..t + 16].copy_from_slice(&section_alignment.to_le_bytes());
        pe[t + 16..t + 20].copy_from_slice(&0x200u32.to_le_bytes());
        pe[t + 20..t + 24].copy_from_slice(&size_of_headers.to_le_bytes());
        pe.extend_from_slice(&[0xC3; 0x200]);
        if with_symbols {
            let at = pe.len() as u32;
            pe[coff + 8..coff + 12].copy_from_slice(&at.to_le_bytes());
            pe[coff + 12..coff + 16].copy_from_slice(&3u32.to_le_bytes());
            pe.extend_from_slice(&[0xEE; 77]);
        }
        pe
    }

    fn inputs<'a>(stub: &'a [u8], linux: &'a [u8], initrd: &'a [u8]) -> UkiInputs<'a> {
        UkiInputs { stub, version: "0.1.0", cmdline: "console=ttyS0 quiet", uname: "6.1.0-56-amd64", linux, initrd }
    }

    #[test]
    fn sections_are_appended_aligned_and_read_back() {
        let stub = tiny_pe(0x400, 0x200, true);
        let linux: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let initrd = vec![9u8; 5000];
        let uki = build(&inputs(&stub, &linux, &initrd)).unwrap();
        let info = parse(&uki).unwrap();
        let names: Vec<&str> = info.sections.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, [".text", ".osrel", ".cmdline", ".uname", ".linux", ".initrd"]);
        let mut prev_end = 0x400 + 0x200;
        for s in &info.sections[1..] {
            assert_eq!(s.virtual_address % 4096, 0, "{s:?}");
            assert_eq!(s.raw_offset % info.file_alignment, 0, "{s:?}");
            assert_eq!(s.raw_size % info.file_alignment, 0, "{s:?}");
            assert!(s.raw_offset >= prev_end, "{s:?}");
            prev_end = s.raw_offset + s.raw_size;
            assert_eq!(s.characteristics, IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ);
        }
        for w in info.sections.windows(2) {
            assert!(w[1].virtual_address >= w[0].virtual_address + w[0].virtual_size, "{w:?}");
        }
        let last = info.sections.last().unwrap();
        assert_eq!(info.size_of_image, (last.virtual_address + last.virtual_size).div_ceil(0x200) * 0x200);
        assert_eq!(uki.len() as u32, prev_end, "symbols dropped, nothing after the last section");
        assert_eq!(info.symbol_table, 0);
        assert_eq!(info.checksum, pe_checksum(&uki, info.optional + 64));
        assert_eq!(section_data(&uki, ".linux").unwrap(), &linux[..]);
        assert_eq!(section_data(&uki, ".initrd").unwrap(), &initrd[..]);
        assert_eq!(section_data(&uki, ".cmdline").unwrap(), b"console=ttyS0 quiet\n");
        assert_eq!(section_data(&uki, ".uname").unwrap(), b"6.1.0-56-amd64\n");
        let osrel = String::from_utf8(section_data(&uki, ".osrel").unwrap().to_vec()).unwrap();
        assert!(osrel.contains("ID=hermes\n") && osrel.contains("VERSION_ID=0.1.0\n"), "{osrel}");
        assert_eq!(section_data(&uki, ".text").unwrap(), &[0xC3; 0x10]);
        assert_eq!(build(&inputs(&stub, &linux, &initrd)).unwrap(), uki, "reproducible");
    }

    #[test]
    fn no_room_and_bad_input_are_refused() {
        // Headers of 0x200 hold the table's 1 entry and 2 more (0x84 + 20 + 240 + 40 = 0x1B0; 80 bytes left).
        let stub = tiny_pe(0x200, 0x1000, false);
        assert_eq!(build(&inputs(&stub, b"k", b"i")), Err(UkiError::NoRoom { need: 5, have: 2 }));
        assert!(add_sections(&stub, &[(".osrel", b"x")]).is_ok());
        assert!(matches!(add_sections(&stub, &[(".text", b"x")]), Err(UkiError::Exists(_))));
        assert!(matches!(add_sections(&stub, &[(".toolongname", b"x")]), Err(UkiError::LongName(_))));
        assert!(matches!(parse(b"MZ"), Err(UkiError::NotPe(_))));
        assert!(matches!(parse(b"ELF"), Err(UkiError::NotPe(_))));
        let mut truncated = stub.clone();
        truncated.truncate(0x300);
        assert!(matches!(parse(&truncated), Err(UkiError::NotPe(_))));
    }

    /// Debian's stub: objdump (binutils) reads the UKI back. Needs the image cache, so it runs
    /// after `cargo xtask image` (scripts/test.sh's QEMU stage runs the ignored tests).
    #[test]
    #[ignore = "needs target/image-cache from `cargo xtask image`; scripts/test.sh runs it with --ignored"]
    fn debian_stub_with_objdump() {
        let stub_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/image-cache/root/usr/lib/systemd/boot/efi/linuxx64.efi.stub");
        let stub = std::fs::read(&stub_path).unwrap_or_else(|e| panic!("{}: {e}", stub_path.display()));
        let uki = build(&inputs(&stub, &[1u8; 70_000], &[2u8; 30_000])).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("uki.efi");
        std::fs::write(&p, &uki).unwrap();
        let out = std::process::Command::new("objdump").arg("-h").arg(&p).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
        for s in [".sdmagic", ".osrel", ".cmdline", ".uname", ".linux", ".initrd"] {
            assert!(text.contains(s), "{s} missing:\n{text}");
        }
        assert!(text.contains("pei-x86-64"), "{text}");
    }
}
