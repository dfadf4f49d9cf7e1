//! Reading cpio "newc" archives, the format of Linux's initramfs
//! (`cpio -o -H newc`; the kernel's `Documentation/driver-api/early-userspace/buffer-format.rst`).
//!
//! An archive is a sequence of entries, each a 110-byte ASCII header, the
//! NUL-terminated name, padding to a multiple of four, the data, padding to
//! a multiple of four; the entry named `TRAILER!!!` ends it. Every header
//! field is eight hexadecimal digits.
//!
//! The archive comes from a boot module, so it may be anything. [`Archive::parse`]
//! walks it once, to the trailer, before anyone sees an entry: a truncated
//! header, a field that is not hexadecimal, a name without its NUL, a name
//! or data size that runs past the end, or a missing trailer refuses the
//! whole archive, so nothing is ever used from one that is half broken.
//! Entries follow each other by construction (each starts where the last
//! one's padded data ends), so two entries' bytes can never overlap.
//!
//! The crate `cpio_reader` was considered: it stops silently at the first
//! bad header, so a truncated archive would look complete, and it reports
//! no reason. Faultline needs both.
//!
//! Nothing here allocates or panics, whatever the input.

use core::fmt;

/// The newc magic number, the first six bytes of every header.
pub const MAGIC: &[u8; 6] = b"070701";
/// What every cpio format's magic starts with: the newc-with-CRC
/// (`070702`) and old portable (`070707`) formats, which are not read, are
/// still recognised as archives so that they get a clear refusal.
pub const MAGIC_FAMILY: &[u8; 5] = b"07070";
/// Bytes in a header: the magic and thirteen 8-digit fields.
pub const HEADER_LEN: usize = 110;
/// The name of the last entry.
pub const TRAILER: &str = "TRAILER!!!";
/// Longest name accepted, counting its NUL (Linux's `PATH_MAX`).
pub const MAX_NAME: usize = 4096;
/// Most entries accepted before the trailer; a boot archive holds a
/// script and a few programs, and the cap bounds every walk over it.
pub const MAX_ENTRIES: usize = 256;

const FIELDS: [&str; 13] = [
    "ino",
    "mode",
    "uid",
    "gid",
    "nlink",
    "mtime",
    "filesize",
    "devmajor",
    "devminor",
    "rdevmajor",
    "rdevminor",
    "namesize",
    "check",
];
const FIELD_MODE: usize = 1;
const FIELD_FILESIZE: usize = 6;
const FIELD_NAMESIZE: usize = 11;

/// `st_mode`'s file-type bits and the two types the kernel cares about.
const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;

/// Why an archive is refused. `offset` is where the entry's header starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpioError<'a> {
    /// The archive ends inside the header at `offset`.
    TruncatedHeader {
        offset: usize,
        left: usize,
    },
    /// The header at `offset` does not start with [`MAGIC`]; `found` holds
    /// the six bytes that are there.
    BadMagic {
        offset: usize,
        found: [u8; 6],
    },
    /// A field holds something other than eight hexadecimal digits.
    BadField {
        offset: usize,
        field: &'static str,
    },
    /// `namesize` is 0 or 1: no room for a name and its NUL.
    EmptyName {
        offset: usize,
    },
    /// `namesize` is larger than [`MAX_NAME`].
    NameTooLong {
        offset: usize,
        size: u32,
    },
    /// The name runs past the end of the archive.
    TruncatedName {
        offset: usize,
        size: u32,
    },
    /// The name's last byte is not NUL, or a NUL comes before it.
    NameNotTerminated {
        offset: usize,
    },
    NameNotUtf8 {
        offset: usize,
    },
    /// The entry's data runs past the end of the archive.
    TruncatedData {
        offset: usize,
        name: &'a str,
        size: u32,
        left: usize,
    },
    /// The archive ends at `offset` without a `TRAILER!!!` entry.
    NoTrailer {
        offset: usize,
    },
    /// More than [`MAX_ENTRIES`] entries before the trailer.
    TooManyEntries,
}

impl fmt::Display for CpioError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpioError::TruncatedHeader { offset, left } => write!(
                f,
                "truncated: the header at byte {offset} needs {HEADER_LEN} bytes, {left} are left"
            ),
            CpioError::BadMagic { offset, found } => {
                write!(f, "the header at byte {offset} starts with '")?;
                for &b in found {
                    match b {
                        b' '..=b'~' => write!(f, "{}", b as char)?,
                        _ => write!(f, "\\x{b:02x}")?,
                    }
                }
                write!(
                    f,
                    "', not the newc magic '070701' (only `cpio -H newc` archives are read)"
                )
            }
            CpioError::BadField { offset, field } => write!(
                f,
                "the header at byte {offset} has a '{field}' field that is not 8 hexadecimal digits"
            ),
            CpioError::EmptyName { offset } => {
                write!(f, "the entry at byte {offset} has an empty name")
            }
            CpioError::NameTooLong { offset, size } => write!(
                f,
                "the entry at byte {offset} has a name of {size} bytes (at most {MAX_NAME})"
            ),
            CpioError::TruncatedName { offset, size } => write!(
                f,
                "truncated: the name of the entry at byte {offset} ({size} bytes) runs past the end"
            ),
            CpioError::NameNotTerminated { offset } => write!(
                f,
                "the name of the entry at byte {offset} is not a NUL-terminated string"
            ),
            CpioError::NameNotUtf8 { offset } => {
                write!(f, "the name of the entry at byte {offset} is not UTF-8")
            }
            CpioError::TruncatedData {
                offset,
                name,
                size,
                left,
            } => write!(
                f,
                "truncated: entry '{name}' at byte {offset} has {size} bytes of data, {left} are left"
            ),
            CpioError::NoTrailer { offset } => write!(
                f,
                "truncated: the archive ends at byte {offset} without its '{TRAILER}' entry"
            ),
            CpioError::TooManyEntries => write!(f, "more than {MAX_ENTRIES} entries"),
        }
    }
}

/// One member of an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Where its header starts in the archive, for messages.
    pub offset: usize,
    pub name: &'a str,
    /// `st_mode`: file type and permissions.
    pub mode: u32,
    pub data: &'a [u8],
}

impl Entry<'_> {
    pub fn is_regular(&self) -> bool {
        self.mode & S_IFMT == S_IFREG
    }

    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }
}

/// An archive that [`Archive::parse`] walked to its trailer.
#[derive(Debug, Clone, Copy)]
pub struct Archive<'a> {
    bytes: &'a [u8],
    len: usize,
}

impl<'a> Archive<'a> {
    /// Checks the whole archive. Bytes after the trailer are ignored, as
    /// Linux and GNU cpio do (cpio pads archives to 512-byte blocks).
    pub fn parse(bytes: &'a [u8]) -> Result<Archive<'a>, CpioError<'a>> {
        let mut offset = 0;
        let mut len = 0;
        loop {
            let (entry, next) = read_entry(bytes, offset)?;
            if entry.name == TRAILER {
                return Ok(Archive { bytes, len });
            }
            if len == MAX_ENTRIES {
                return Err(CpioError::TooManyEntries);
            }
            len += 1;
            offset = next;
        }
    }

    /// The entries before the trailer, in archive order.
    pub fn entries(&self) -> Entries<'a> {
        Entries {
            bytes: self.bytes,
            offset: 0,
            left: self.len,
        }
    }

    /// Entries before the trailer.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Iterator over a parsed archive's entries.
#[derive(Debug, Clone)]
pub struct Entries<'a> {
    bytes: &'a [u8],
    offset: usize,
    left: usize,
}

impl<'a> Iterator for Entries<'a> {
    type Item = Entry<'a>;

    fn next(&mut self) -> Option<Entry<'a>> {
        if self.left == 0 {
            return None;
        }
        // `parse` read these very bytes without an error, so this cannot
        // fail; were it to, the walk ends rather than panics.
        let (entry, next) = read_entry(self.bytes, self.offset).ok()?;
        self.left -= 1;
        self.offset = next;
        Some(entry)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// Reads the entry whose header starts at `offset`; returns it and where
/// the next header starts (which may be past the end for the trailer,
/// whose padding an archive may leave out).
fn read_entry(bytes: &[u8], offset: usize) -> Result<(Entry<'_>, usize), CpioError<'_>> {
    let rest = bytes.get(offset..).unwrap_or(&[]);
    if rest.is_empty() {
        return Err(CpioError::NoTrailer { offset });
    }
    let Some(header) = rest.get(..HEADER_LEN) else {
        // A short tail that is not even the start of a header says the
        // archive is over, not that a header was cut.
        if !MAGIC.starts_with(&rest[..rest.len().min(MAGIC.len())]) {
            return Err(bad_magic(offset, rest));
        }
        return Err(CpioError::TruncatedHeader {
            offset,
            left: rest.len(),
        });
    };
    if !header.starts_with(MAGIC) {
        return Err(bad_magic(offset, rest));
    }
    let field = |index: usize| -> Result<u32, CpioError<'static>> {
        let start = MAGIC.len() + 8 * index;
        header
            .get(start..start + 8)
            .and_then(parse_hex)
            .ok_or(CpioError::BadField {
                offset,
                field: FIELDS[index],
            })
    };
    // Every field must be well formed, even those nobody reads: a header
    // with garbage in it is not one to trust the rest of.
    let mut values = [0u32; FIELDS.len()];
    for (index, value) in values.iter_mut().enumerate() {
        *value = field(index)?;
    }
    let (mode, file_size, name_size) = (
        values[FIELD_MODE],
        values[FIELD_FILESIZE],
        values[FIELD_NAMESIZE],
    );
    if name_size < 2 {
        return Err(CpioError::EmptyName { offset });
    }
    if name_size as usize > MAX_NAME {
        return Err(CpioError::NameTooLong {
            offset,
            size: name_size,
        });
    }
    let name_end = HEADER_LEN + name_size as usize;
    let raw_name = rest
        .get(HEADER_LEN..name_end)
        .ok_or(CpioError::TruncatedName {
            offset,
            size: name_size,
        })?;
    let name = match raw_name.split_last() {
        Some((0, name)) if !name.contains(&0) => name,
        _ => return Err(CpioError::NameNotTerminated { offset }),
    };
    let name = core::str::from_utf8(name).map_err(|_| CpioError::NameNotUtf8 { offset })?;
    // name_end is at most HEADER_LEN + MAX_NAME; a size so large that the
    // sum saturates is simply not in the archive.
    let data_start = name_end.next_multiple_of(4);
    let data_end = data_start.saturating_add(file_size as usize);
    let data = match rest.get(data_start..data_end) {
        Some(data) => data,
        // The trailer's padding may be missing; it has no data to lose.
        None if file_size == 0 => &[],
        None => {
            return Err(CpioError::TruncatedData {
                offset,
                name,
                size: file_size,
                left: rest.len().saturating_sub(data_start),
            });
        }
    };
    let entry = Entry {
        offset,
        name,
        mode,
        data,
    };
    Ok((entry, offset + data_end.next_multiple_of(4)))
}

fn bad_magic(offset: usize, rest: &[u8]) -> CpioError<'static> {
    let mut found = [0u8; 6];
    let n = rest.len().min(found.len());
    found[..n].copy_from_slice(&rest[..n]);
    CpioError::BadMagic { offset, found }
}

/// Eight ASCII hexadecimal digits, either case; nothing else (no sign, no
/// spaces, no `0x`).
fn parse_hex(digits: &[u8]) -> Option<u32> {
    if digits.len() != 8 {
        return None;
    }
    digits.iter().try_fold(0u32, |acc, &d| {
        let v = (d as char).to_digit(16)?;
        Some(acc << 4 | v)
    })
}
