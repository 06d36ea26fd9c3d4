//! What the dynamic loader reads of an ELF file: its type, class and machine, the program
//! interpreter (`PT_INTERP`), and the dynamic section's `DT_NEEDED`, `DT_SONAME`,
//! `DT_RPATH` and `DT_RUNPATH`. 32- and 64-bit files of either byte order.

use std::path::{Path, PathBuf};

use object::elf;
use object::read::elf::{Dyn, FileHeader, ProgramHeader};
use object::{Endianness, FileKind};

/// The first bytes of every ELF file.
pub const MAGIC: &[u8] = b"\x7fELF";

#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("`{file}`: malformed ELF file: {reason}")]
    Malformed {
        file: PathBuf,
        reason: &'static str,
        #[source]
        source: Option<object::read::Error>,
    },
}

/// The loader-relevant facts of one ELF file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ElfInfo {
    pub is_64: bool,
    pub big_endian: bool,
    /// `e_machine` (62 = x86-64).
    pub machine: u16,
    /// `e_type` (2 = executable, 3 = shared object or position-independent executable).
    pub kind: u16,
    /// `PT_INTERP`, if any.
    pub interpreter: Option<String>,
    /// Has a `PT_DYNAMIC` segment (static-pie binaries have one but need nothing).
    pub dynamic: bool,
    pub needed: Vec<String>,
    pub soname: Option<String>,
    /// `DT_RPATH`, split at `:`.
    pub rpath: Vec<String>,
    /// `DT_RUNPATH`, split at `:`.
    pub runpath: Vec<String>,
}

impl ElfInfo {
    /// An executable or shared object (not a relocatable object or core dump).
    pub fn is_loadable(&self) -> bool {
        self.kind == elf::ET_EXEC.0 || self.kind == elf::ET_DYN.0
    }

    /// Needs nothing from the dynamic loader: no interpreter and no libraries.
    pub fn is_static(&self) -> bool {
        self.interpreter.is_none() && self.needed.is_empty()
    }

    /// Can be loaded into the same process as `other`.
    pub fn same_abi(&self, other: &ElfInfo) -> bool {
        self.is_64 == other.is_64
            && self.big_endian == other.big_endian
            && self.machine == other.machine
    }
}

/// True when `data` starts like an ELF file.
pub fn is_elf(data: &[u8]) -> bool {
    data.starts_with(MAGIC)
}

/// Parse the whole ELF file `data`; `file` names it in errors.
pub fn parse(file: &Path, data: &[u8]) -> Result<ElfInfo, ElfError> {
    match FileKind::parse(data) {
        Ok(FileKind::Elf64) => parse_as::<elf::FileHeader64<Endianness>>(file, data),
        Ok(FileKind::Elf32) => parse_as::<elf::FileHeader32<Endianness>>(file, data),
        _ => Err(ElfError::Malformed {
            file: file.into(),
            reason: "not a 32- or 64-bit ELF file",
            source: None,
        }),
    }
}

fn parse_as<Elf: FileHeader<Endian = Endianness>>(
    file: &Path,
    data: &[u8],
) -> Result<ElfInfo, ElfError> {
    let bad = |reason: &'static str| {
        let file = file.to_path_buf();
        move |source| ElfError::Malformed {
            file,
            reason,
            source: Some(source),
        }
    };
    let header = Elf::parse(data).map_err(bad("file header"))?;
    let endian = header.endian().map_err(bad("byte order"))?;
    let mut info = ElfInfo {
        is_64: header.is_class_64(),
        big_endian: endian == Endianness::Big,
        machine: header.e_machine(endian).0,
        kind: header.e_type(endian).0,
        ..ElfInfo::default()
    };
    for ph in header
        .program_headers(endian, data)
        .map_err(bad("program headers"))?
    {
        let ty = ph.p_type(endian);
        if ty == elf::PT_INTERP {
            let raw = ph.data(endian, data).map_err(|()| ElfError::Malformed {
                file: file.into(),
                reason: "PT_INTERP outside the file",
                source: None,
            })?;
            let path = raw.split(|&b| b == 0).next().unwrap_or_default();
            info.interpreter = Some(String::from_utf8_lossy(path).into_owned());
        } else if ty == elf::PT_DYNAMIC {
            info.dynamic = true;
        }
    }
    let sections = header
        .sections(endian, data)
        .map_err(bad("section headers"))?;
    let Some((dynamic, link)) = sections.dynamic(endian, data).map_err(bad(".dynamic"))? else {
        if info.dynamic {
            return Err(ElfError::Malformed {
                file: file.into(),
                reason: "a dynamic segment but no .dynamic section header (section headers stripped?)",
                source: None,
            });
        }
        return Ok(info);
    };
    let strings = sections
        .strings(endian, data, link)
        .map_err(bad(".dynamic string table"))?;
    let split = |s: &[u8]| -> Vec<String> {
        String::from_utf8_lossy(s)
            .split(':')
            .map(str::to_owned)
            .collect()
    };
    for d in dynamic {
        let tag = d.tag(endian);
        if tag == elf::DT_NULL {
            break;
        }
        let text = || d.string(endian, strings).map_err(bad("dynamic string"));
        if tag == elf::DT_NEEDED {
            info.needed
                .push(String::from_utf8_lossy(text()?).into_owned());
        } else if tag == elf::DT_SONAME {
            info.soname = Some(String::from_utf8_lossy(text()?).into_owned());
        } else if tag == elf::DT_RPATH {
            info.rpath = split(text()?);
        } else if tag == elf::DT_RUNPATH {
            info.runpath = split(text()?);
        }
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn this_machines(name: &str) -> (PathBuf, Vec<u8>) {
        let p = ["/usr/bin", "/bin"]
            .iter()
            .map(|d| Path::new(d).join(name))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("this test needs /usr/bin/{name}"));
        let data = std::fs::read(&p).unwrap();
        (p, data)
    }

    #[test]
    fn a_dynamic_executable_of_this_machine() {
        let (p, data) = this_machines("true");
        assert!(is_elf(&data));
        let info = parse(&p, &data).unwrap();
        assert!(info.is_loadable() && !info.is_static() && info.dynamic);
        assert!(info.needed.contains(&"libc.so.6".to_owned()), "{info:?}");
        assert!(
            info.interpreter
                .as_deref()
                .is_some_and(|i| i.starts_with('/'))
        );
        assert!(info.rpath.is_empty() && info.runpath.is_empty());
        assert!(info.same_abi(&info));
    }

    #[test]
    fn the_c_library_has_a_soname_and_other_abis_differ() {
        let libc = Path::new("/lib/x86_64-linux-gnu/libc.so.6");
        let data = std::fs::read(libc).expect("this test needs an x86-64 Debian machine");
        let info = parse(libc, &data).unwrap();
        assert_eq!(info.soname.as_deref(), Some("libc.so.6"));
        assert_eq!(info.machine, elf::EM_X86_64.0);
        assert!(info.is_64 && !info.big_endian);
        let other = ElfInfo {
            is_64: false,
            ..info.clone()
        };
        assert!(!info.same_abi(&other));
    }

    #[test]
    fn non_elf_and_truncated_files_are_errors() {
        let e = parse(Path::new("s.sh"), b"#!/bin/sh\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "`s.sh`: malformed ELF file: not a 32- or 64-bit ELF file"
        );
        let (_, mut data) = this_machines("true");
        data.truncate(200);
        assert!(parse(Path::new("cut"), &data).is_err());
    }
}
