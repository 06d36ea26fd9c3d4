//! `/etc/ld.so.cache`, the dynamic loader's index of the libraries in the directories of
//! `/etc/ld.so.conf` (written by `ldconfig`). Only the glibc 2.32+ layout
//! (`glibc-ld.so.cache1.1`, alone or after the old `ld.so-1.7.0` table) is read: it is what
//! every supported build machine's loader reads.

/// `file_entry_new.flags & FLAG_TYPE_MASK` of an ELF library for glibc.
pub const FLAG_ELF_LIBC6: i32 = 0x0003;
/// The library-type part of the flags (the rest says which ABI: x86-64, x32, …).
pub const FLAG_TYPE_MASK: i32 = 0x00ff;

const OLD_MAGIC: &[u8] = b"ld.so-1.7.0";
const NEW_MAGIC: &[u8] = b"glibc-ld.so.cache1.1";
/// `struct cache_file_new` without its entries.
const NEW_HEADER: usize = 48;
/// `struct file_entry_new`.
const NEW_ENTRY: usize = 24;
/// `struct cache_file` without its entries, and `struct file_entry`.
const OLD_HEADER: usize = 16;
const OLD_ENTRY: usize = 12;

/// One library in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub flags: i32,
    /// The name a binary asks for (`libc.so.6`).
    pub key: String,
    /// The file (`/lib/x86_64-linux-gnu/libc.so.6`).
    pub value: String,
    /// Non-zero for the optimized copies of `glibc-hwcaps/` subdirectories.
    pub hwcap: u64,
}

impl Entry {
    /// A glibc ELF library for the baseline CPU (what a bundle takes).
    pub fn is_plain_libc6(&self) -> bool {
        self.flags & FLAG_TYPE_MASK == FLAG_ELF_LIBC6 && self.hwcap == 0
    }
}

/// The entries of a cache file's bytes, in file order; the error says what is wrong.
pub fn parse(data: &[u8]) -> Result<Vec<Entry>, String> {
    let start = if data.starts_with(NEW_MAGIC) {
        0
    } else if data.starts_with(OLD_MAGIC) {
        let n = u32_at(data, 12, false).ok_or("truncated old-format header")? as usize;
        let end = n
            .checked_mul(OLD_ENTRY)
            .and_then(|b| b.checked_add(OLD_HEADER))
            .ok_or("old-format entry count overflows")?;
        let aligned = end.div_ceil(8) * 8;
        if !data
            .get(aligned..)
            .is_some_and(|d| d.starts_with(NEW_MAGIC))
        {
            return Err("only the old (pre-glibc 2.32) format, which is not read".into());
        }
        aligned
    } else {
        return Err("not an ld.so.cache file (unknown magic)".into());
    };
    let new = &data[start..];
    if new.len() < NEW_HEADER {
        return Err("truncated header".into());
    }
    // flags: 0 = unknown (the machine's own order), 2 = little endian, 3 = big endian.
    let big = match new[28] & 3 {
        0 => cfg!(target_endian = "big"),
        2 => false,
        3 => true,
        _ => return Err("invalid byte-order flag".into()),
    };
    let nlibs = u32_at(new, 20, big).ok_or("truncated header")? as usize;
    let mut out = Vec::with_capacity(nlibs.min(1 << 16));
    for i in 0..nlibs {
        let at = NEW_HEADER + i * NEW_ENTRY;
        let field = |off: usize| u32_at(new, at + off, big).ok_or("truncated entry");
        let (flags, key, value) = (field(0)? as i32, field(4)?, field(8)?);
        let hwcap = u64_at(new, at + 16, big).ok_or("truncated entry")?;
        let key = string_at(new, key as usize).ok_or("entry key outside the file")?;
        let value = string_at(new, value as usize).ok_or("entry value outside the file")?;
        out.push(Entry {
            flags,
            key,
            value,
            hwcap,
        });
    }
    Ok(out)
}

fn u32_at(d: &[u8], at: usize, big: bool) -> Option<u32> {
    let b: [u8; 4] = d.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(if big {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    })
}

fn u64_at(d: &[u8], at: usize, big: bool) -> Option<u64> {
    let b: [u8; 8] = d.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(if big {
        u64::from_be_bytes(b)
    } else {
        u64::from_le_bytes(b)
    })
}

/// The NUL-terminated string at `at` (offsets count from the new header).
fn string_at(d: &[u8], at: usize) -> Option<String> {
    let rest = d.get(at..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new-format cache of `(flags, key, value, hwcap)`, optionally after an old table.
    fn cache(entries: &[(i32, &str, &str, u64)], old_entries: Option<u32>) -> Vec<u8> {
        let mut strings = Vec::new();
        let base = NEW_HEADER + entries.len() * NEW_ENTRY;
        let mut offs = Vec::new();
        for (_, k, v, _) in entries {
            let k_off = base + strings.len();
            strings.extend_from_slice(k.as_bytes());
            strings.push(0);
            let v_off = base + strings.len();
            strings.extend_from_slice(v.as_bytes());
            strings.push(0);
            offs.push((k_off as u32, v_off as u32));
        }
        let mut new = Vec::new();
        new.extend_from_slice(NEW_MAGIC);
        new.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        new.extend_from_slice(&(strings.len() as u32).to_le_bytes());
        new.extend_from_slice(&[2, 0, 0, 0]); // little endian
        new.extend_from_slice(&[0u8; 16]); // extension offset + unused
        for ((flags, _, _, hwcap), (k, v)) in entries.iter().zip(&offs) {
            new.extend_from_slice(&flags.to_le_bytes());
            new.extend_from_slice(&k.to_le_bytes());
            new.extend_from_slice(&v.to_le_bytes());
            new.extend_from_slice(&0u32.to_le_bytes());
            new.extend_from_slice(&hwcap.to_le_bytes());
        }
        new.extend_from_slice(&strings);
        let Some(n) = old_entries else { return new };
        let mut out = Vec::new();
        out.extend_from_slice(OLD_MAGIC);
        out.push(0);
        out.extend_from_slice(&n.to_le_bytes());
        out.resize((OLD_HEADER + n as usize * OLD_ENTRY).div_ceil(8) * 8, 0);
        out.extend_from_slice(&new);
        out
    }

    const X86_64: i32 = 0x0303;

    #[test]
    fn new_format_entries_in_order() {
        let data = cache(
            &[
                (X86_64, "libm.so.6", "/lib/x86_64-linux-gnu/libm.so.6", 0),
                (0x0003, "libm.so.6", "/lib32/libm.so.6", 0),
                (
                    X86_64,
                    "libc.so.6",
                    "/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v3/libc.so.6",
                    1 << 62,
                ),
            ],
            None,
        );
        let e = parse(&data).unwrap();
        let text: Vec<String> = e
            .iter()
            .map(|e| {
                format!(
                    "{:#06x} {} {} {}",
                    e.flags,
                    e.key,
                    e.value,
                    e.is_plain_libc6()
                )
            })
            .collect();
        assert_eq!(
            text,
            [
                "0x0303 libm.so.6 /lib/x86_64-linux-gnu/libm.so.6 true",
                "0x0003 libm.so.6 /lib32/libm.so.6 true",
                "0x0303 libc.so.6 /lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v3/libc.so.6 false",
            ]
        );
    }

    #[test]
    fn the_compat_format_skips_the_old_table() {
        let entries = [(X86_64, "libz.so.1", "/usr/lib/libz.so.1", 0)];
        for n in [0, 1, 3] {
            let e = parse(&cache(&entries, Some(n))).unwrap();
            assert_eq!(e.len(), 1, "{n} old entries");
            assert_eq!(e[0].value, "/usr/lib/libz.so.1");
        }
    }

    #[test]
    fn bad_files_say_why() {
        assert_eq!(
            parse(b"hello").unwrap_err(),
            "not an ld.so.cache file (unknown magic)"
        );
        let mut old = cache(&[], Some(2));
        old.truncate(OLD_HEADER + 2 * OLD_ENTRY);
        assert_eq!(
            parse(&old).unwrap_err(),
            "only the old (pre-glibc 2.32) format, which is not read"
        );
        let mut data = cache(&[(X86_64, "libc.so.6", "/lib/libc.so.6", 0)], None);
        data.truncate(NEW_HEADER + 10);
        assert_eq!(parse(&data).unwrap_err(), "truncated entry");
        let mut data = cache(&[(X86_64, "libc.so.6", "/lib/libc.so.6", 0)], None);
        data[NEW_HEADER + 4..NEW_HEADER + 8].copy_from_slice(&9999u32.to_le_bytes());
        assert_eq!(parse(&data).unwrap_err(), "entry key outside the file");
    }

    /// This build machine's own cache has its C library.
    #[test]
    fn this_machines_cache_lists_libc() {
        let Ok(data) = std::fs::read("/etc/ld.so.cache") else {
            panic!("this test needs /etc/ld.so.cache (run ldconfig)");
        };
        let e = parse(&data).unwrap();
        assert!(
            e.iter()
                .any(|e| e.key == "libc.so.6" && e.is_plain_libc6() && e.value.starts_with('/')),
            "{e:?}"
        );
    }
}
