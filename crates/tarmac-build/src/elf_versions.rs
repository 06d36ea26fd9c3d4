//! What an x86_64 ELF binary needs from the host's C library, read from its dynamic section
//! (`DT_NEEDED`), its symbol version requirements (`.gnu.version_r`) and its program
//! interpreter (`PT_INTERP`), and whether that fits an old glibc baseline.
//!
//! The `tarmac-host` a bootstrap ships must run on every mainstream Linux host, so it is
//! built against glibc 2.17 (`scripts/build-portable.sh`). [`check_portable`] is how that is
//! verified: every `GLIBC_x.y[.z]` version the binary requires must be at most the baseline,
//! and it may only link glibc's own libraries ([`BASE_LIBRARIES`]).

use std::fmt;
use std::path::{Path, PathBuf};

use object::elf;
use object::read::elf::{Dyn, FileHeader, ProgramHeader};
use object::{Endianness, FileKind};

/// The oldest glibc Tarmac's portable binaries support (RHEL/CentOS 7).
pub const GLIBC_BASELINE: GlibcVersion = GlibcVersion([2, 17, 0]);

/// The libraries a portable binary may need: glibc itself and the loader.
pub const BASE_LIBRARIES: &[&str] = &[
    "libc.so.6",
    "libm.so.6",
    "libdl.so.2",
    "libpthread.so.0",
    "librt.so.1",
    "ld-linux-x86-64.so.2",
];

/// The x86_64 glibc program interpreter.
pub const X86_64_INTERPRETER: &str = "/lib64/ld-linux-x86-64.so.2";

/// One symbol version a binary requires of a library (`vna_name` of `vn_file`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct VersionNeed {
    /// The library, e.g. `libc.so.6`.
    pub library: String,
    /// The version name, e.g. `GLIBC_2.17`.
    pub version: String,
}

/// What a binary needs from the dynamic loader.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ElfNeeds {
    /// `PT_INTERP`, if any (none for a static binary).
    pub interpreter: Option<String>,
    /// `DT_NEEDED` entries, in file order.
    pub needed: Vec<String>,
    /// `.gnu.version_r` entries, in file order.
    pub versions: Vec<VersionNeed>,
}

impl ElfNeeds {
    /// The newest `GLIBC_*` version required, if any.
    pub fn max_glibc(&self) -> Option<GlibcVersion> {
        self.versions
            .iter()
            .filter_map(|v| GlibcVersion::from_symbol_version(&v.version))
            .max()
    }
}

/// A glibc version such as 2.17 or 2.2.5 (x86_64's first symbol version).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GlibcVersion(pub [u32; 3]);

impl GlibcVersion {
    /// `2.17` or `2.2.5`; `None` for anything else.
    pub fn parse(s: &str) -> Option<GlibcVersion> {
        let mut parts = [0u32; 3];
        let mut n = 0;
        for p in s.split('.') {
            if n == 3 || p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            parts[n] = p.parse().ok()?;
            n += 1;
        }
        (n >= 2).then_some(GlibcVersion(parts))
    }

    /// `GLIBC_2.17` → 2.17; `None` for other names (`GLIBC_PRIVATE`, `GCC_3.0`).
    pub fn from_symbol_version(name: &str) -> Option<GlibcVersion> {
        GlibcVersion::parse(name.strip_prefix("GLIBC_")?)
    }
}

impl fmt::Display for GlibcVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c] = self.0;
        if c == 0 {
            write!(f, "{a}.{b}")
        } else {
            write!(f, "{a}.{b}.{c}")
        }
    }
}

/// Why a binary does not run on every host with the baseline glibc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A `GLIBC_x.y` version newer than the baseline.
    TooNew { library: String, version: String },
    /// A version of a glibc library that is not a public `GLIBC_x.y` one (`GLIBC_PRIVATE`).
    NotPublic { library: String, version: String },
    /// A needed library outside [`BASE_LIBRARIES`].
    Library { name: String },
    /// A program interpreter other than [`X86_64_INTERPRETER`].
    Interpreter { path: String },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::TooNew { library, version } => write!(f, "{version} (of {library})"),
            Problem::NotPublic { library, version } => {
                write!(f, "{version} (of {library}: not a public glibc version)")
            }
            Problem::Library { name } => write!(f, "{name} (not part of glibc)"),
            Problem::Interpreter { path } => {
                write!(f, "interpreter {path} (not {X86_64_INTERPRETER})")
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("cannot read `{file}`")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{file}` is not a 64-bit little-endian ELF file")]
    NotElf64 { file: PathBuf },
    #[error("`{file}`: malformed ELF: {reason}")]
    Malformed {
        file: PathBuf,
        reason: &'static str,
        #[source]
        source: Option<object::read::Error>,
    },
    #[error(
        "`{file}` does not run on every host with glibc {baseline}; it needs:\n{}",
        problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n")
    )]
    NotPortable {
        file: PathBuf,
        baseline: GlibcVersion,
        problems: Vec<Problem>,
    },
}

impl tarmac_types::error_report::Hint for ElfError {
    fn hint(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            ElfError::NotElf64 { .. } => Some("pass a Linux x86_64 binary".into()),
            ElfError::NotPortable { baseline, .. } => Some(
                format!(
                    "build it with scripts/build-portable.sh (links against glibc {baseline} with zig)"
                )
                .into(),
            ),
            ElfError::Read { .. } | ElfError::Malformed { .. } => None,
        }
    }
}

/// What `data` (a whole ELF file) needs; `file` names it in errors.
pub fn parse_needs(file: &Path, data: &[u8]) -> Result<ElfNeeds, ElfError> {
    if FileKind::parse(data).ok() != Some(FileKind::Elf64) {
        return Err(ElfError::NotElf64 { file: file.into() });
    }
    let bad = |reason: &'static str| {
        let file = file.to_path_buf();
        move |source| ElfError::Malformed {
            file,
            reason,
            source: Some(source),
        }
    };
    let header = elf::FileHeader64::<Endianness>::parse(data).map_err(bad("file header"))?;
    let endian = header.endian().map_err(bad("byte order"))?;
    if endian != Endianness::Little {
        return Err(ElfError::NotElf64 { file: file.into() });
    }
    let mut needs = ElfNeeds::default();

    for ph in header
        .program_headers(endian, data)
        .map_err(bad("program headers"))?
    {
        if ph.p_type(endian) == elf::PT_INTERP {
            let raw = ph.data(endian, data).map_err(|()| ElfError::Malformed {
                file: file.into(),
                reason: "PT_INTERP outside the file",
                source: None,
            })?;
            let path = raw.split(|&b| b == 0).next().unwrap_or_default();
            needs.interpreter = Some(String::from_utf8_lossy(path).into_owned());
        }
    }

    let sections = header
        .sections(endian, data)
        .map_err(bad("section headers"))?;
    if let Some((dynamic, link)) = sections.dynamic(endian, data).map_err(bad(".dynamic"))? {
        let strings = sections
            .strings(endian, data, link)
            .map_err(bad(".dynamic string table"))?;
        for d in dynamic {
            let tag = d.tag(endian);
            if tag == elf::DT_NULL {
                break;
            }
            if tag == elf::DT_NEEDED {
                let name = d.string(endian, strings).map_err(bad("DT_NEEDED name"))?;
                needs
                    .needed
                    .push(String::from_utf8_lossy(name).into_owned());
            }
        }
    }
    if let Some((verneeds, link)) = sections
        .gnu_verneed(endian, data)
        .map_err(bad(".gnu.version_r"))?
    {
        let strings = sections
            .strings(endian, data, link)
            .map_err(bad(".gnu.version_r string table"))?;
        for entry in verneeds {
            let (verneed, vernaux) = entry.map_err(bad(".gnu.version_r entry"))?;
            let library = verneed
                .file(endian, strings)
                .map_err(bad(".gnu.version_r file name"))?;
            let library = String::from_utf8_lossy(library).into_owned();
            for aux in vernaux {
                let aux = aux.map_err(bad(".gnu.version_r aux entry"))?;
                let version = aux
                    .name(endian, strings)
                    .map_err(bad(".gnu.version_r version name"))?;
                needs.versions.push(VersionNeed {
                    library: library.clone(),
                    version: String::from_utf8_lossy(version).into_owned(),
                });
            }
        }
    }
    Ok(needs)
}

/// What the ELF file at `file` needs.
pub fn read_needs(file: &Path) -> Result<ElfNeeds, ElfError> {
    let data = std::fs::read(file).map_err(|source| ElfError::Read {
        file: file.into(),
        source,
    })?;
    parse_needs(file, &data)
}

/// Everything in `needs` that a host with glibc `baseline` may lack, in a stable order
/// (interpreter, libraries, then versions sorted by library and version).
pub fn problems(needs: &ElfNeeds, baseline: GlibcVersion) -> Vec<Problem> {
    let mut out = Vec::new();
    if let Some(path) = needs
        .interpreter
        .as_ref()
        .filter(|p| *p != X86_64_INTERPRETER)
    {
        out.push(Problem::Interpreter { path: path.clone() });
    }
    for name in &needs.needed {
        if !BASE_LIBRARIES.contains(&name.as_str()) {
            out.push(Problem::Library { name: name.clone() });
        }
    }
    let mut versions: Vec<&VersionNeed> = needs.versions.iter().collect();
    versions.sort();
    versions.dedup();
    for v in versions {
        if !BASE_LIBRARIES.contains(&v.library.as_str()) {
            // Its library is reported above (it is needed, or the file is inconsistent:
            // then report it here once).
            if !needs.needed.contains(&v.library)
                && !out
                    .iter()
                    .any(|p| matches!(p, Problem::Library { name } if *name == v.library))
            {
                out.push(Problem::Library {
                    name: v.library.clone(),
                });
            }
            continue;
        }
        match GlibcVersion::from_symbol_version(&v.version) {
            Some(ver) if ver <= baseline => {}
            Some(_) => out.push(Problem::TooNew {
                library: v.library.clone(),
                version: v.version.clone(),
            }),
            None => out.push(Problem::NotPublic {
                library: v.library.clone(),
                version: v.version.clone(),
            }),
        }
    }
    out
}

/// Reads `file` and fails with [`ElfError::NotPortable`] listing every problem unless it
/// runs on any x86_64 host with glibc `baseline` or newer; returns what it needs.
pub fn check_portable(file: &Path, baseline: GlibcVersion) -> Result<ElfNeeds, ElfError> {
    let needs = read_needs(file)?;
    let problems = problems(&needs, baseline);
    if problems.is_empty() {
        Ok(needs)
    } else {
        Err(ElfError::NotPortable {
            file: file.into(),
            baseline,
            problems,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal x86_64 ELF shared object: section headers only (null, .dynstr, .dynamic,
    /// .gnu.version_r, .shstrtab), plus a PT_INTERP program header when `interp` is given.
    /// `needed` become DT_NEEDED; `versions` are (library, [version names]) entries.
    fn fixture(interp: Option<&str>, needed: &[&str], versions: &[(&str, &[&str])]) -> Vec<u8> {
        let mut dynstr = vec![0u8];
        let mut add = |s: &str| {
            let off = dynstr.len() as u32;
            dynstr.extend_from_slice(s.as_bytes());
            dynstr.push(0);
            off
        };
        let needed_off: Vec<u32> = needed.iter().map(|n| add(n)).collect();
        let ver_off: Vec<(u32, Vec<u32>)> = versions
            .iter()
            .map(|(lib, vs)| (add(lib), vs.iter().map(|v| add(v)).collect()))
            .collect();

        let mut dynamic = Vec::new();
        for off in &needed_off {
            dynamic.extend_from_slice(&elf::DT_NEEDED.0.to_le_bytes());
            dynamic.extend_from_slice(&u64::from(*off).to_le_bytes());
        }
        dynamic.extend_from_slice(&[0u8; 16]); // DT_NULL

        let mut verneed = Vec::new();
        for (i, (file, names)) in ver_off.iter().enumerate() {
            let last = i + 1 == ver_off.len();
            let size = 16 + 16 * names.len() as u32;
            verneed.extend_from_slice(&1u16.to_le_bytes()); // vn_version
            verneed.extend_from_slice(&(names.len() as u16).to_le_bytes());
            verneed.extend_from_slice(&file.to_le_bytes());
            verneed.extend_from_slice(&16u32.to_le_bytes()); // vn_aux
            verneed.extend_from_slice(&(if last { 0 } else { size }).to_le_bytes());
            for (j, name) in names.iter().enumerate() {
                let last_aux = j + 1 == names.len();
                verneed.extend_from_slice(&0u32.to_le_bytes()); // vna_hash (unused here)
                verneed.extend_from_slice(&0u16.to_le_bytes()); // vna_flags
                verneed.extend_from_slice(&((2 + j) as u16).to_le_bytes()); // vna_other
                verneed.extend_from_slice(&name.to_le_bytes());
                verneed.extend_from_slice(&(if last_aux { 0u32 } else { 16 }).to_le_bytes());
            }
        }

        let shstrtab = b"\0.dynstr\0.dynamic\0.gnu.version_r\0.shstrtab\0".to_vec();
        let interp_bytes = interp.map(|p| {
            let mut b = p.as_bytes().to_vec();
            b.push(0);
            b
        });

        // Layout: ehdr (64) | phdr (56, if any) | interp | dynstr | dynamic | verneed |
        // shstrtab | section headers; 8-byte aligned.
        let align = |n: usize| n.div_ceil(8) * 8;
        let phnum = usize::from(interp.is_some());
        let mut off = 64 + 56 * phnum;
        let interp_off = off;
        off = align(off + interp_bytes.as_ref().map_or(0, Vec::len));
        let dynstr_off = off;
        off = align(off + dynstr.len());
        let dynamic_off = off;
        off = align(off + dynamic.len());
        let verneed_off = off;
        off = align(off + verneed.len());
        let shstrtab_off = off;
        off = align(off + shstrtab.len());
        let shoff = off;

        let mut out = vec![0u8; shoff];
        let put = |out: &mut Vec<u8>, at: usize, bytes: &[u8]| {
            out[at..at + bytes.len()].copy_from_slice(bytes);
        };
        let mut ehdr = Vec::new();
        ehdr.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
        ehdr.extend_from_slice(&[0u8; 8]);
        ehdr.extend_from_slice(&elf::ET_DYN.0.to_le_bytes());
        ehdr.extend_from_slice(&elf::EM_X86_64.0.to_le_bytes());
        ehdr.extend_from_slice(&1u32.to_le_bytes());
        ehdr.extend_from_slice(&0u64.to_le_bytes()); // e_entry
        ehdr.extend_from_slice(&(if phnum > 0 { 64u64 } else { 0 }).to_le_bytes());
        ehdr.extend_from_slice(&(shoff as u64).to_le_bytes());
        ehdr.extend_from_slice(&0u32.to_le_bytes()); // e_flags
        ehdr.extend_from_slice(&64u16.to_le_bytes());
        ehdr.extend_from_slice(&56u16.to_le_bytes());
        ehdr.extend_from_slice(&(phnum as u16).to_le_bytes());
        ehdr.extend_from_slice(&64u16.to_le_bytes());
        ehdr.extend_from_slice(&5u16.to_le_bytes()); // e_shnum
        ehdr.extend_from_slice(&4u16.to_le_bytes()); // e_shstrndx
        put(&mut out, 0, &ehdr);
        if let Some(b) = &interp_bytes {
            let mut ph = Vec::new();
            ph.extend_from_slice(&elf::PT_INTERP.0.to_le_bytes());
            ph.extend_from_slice(&elf::PF_R.0.to_le_bytes());
            ph.extend_from_slice(&(interp_off as u64).to_le_bytes()); // p_offset
            ph.extend_from_slice(&0u64.to_le_bytes()); // p_vaddr
            ph.extend_from_slice(&0u64.to_le_bytes()); // p_paddr
            ph.extend_from_slice(&(b.len() as u64).to_le_bytes()); // p_filesz
            ph.extend_from_slice(&(b.len() as u64).to_le_bytes()); // p_memsz
            ph.extend_from_slice(&1u64.to_le_bytes()); // p_align
            put(&mut out, 64, &ph);
            put(&mut out, interp_off, b);
        }
        put(&mut out, dynstr_off, &dynstr);
        put(&mut out, dynamic_off, &dynamic);
        put(&mut out, verneed_off, &verneed);
        put(&mut out, shstrtab_off, &shstrtab);

        let sh = |name: u32, ty: u32, off: usize, size: usize, link: u32, info: u32, es: u64| {
            let mut h = Vec::new();
            h.extend_from_slice(&name.to_le_bytes());
            h.extend_from_slice(&ty.to_le_bytes());
            h.extend_from_slice(&0u64.to_le_bytes()); // sh_flags
            h.extend_from_slice(&0u64.to_le_bytes()); // sh_addr
            h.extend_from_slice(&(off as u64).to_le_bytes());
            h.extend_from_slice(&(size as u64).to_le_bytes());
            h.extend_from_slice(&link.to_le_bytes());
            h.extend_from_slice(&info.to_le_bytes());
            h.extend_from_slice(&8u64.to_le_bytes()); // sh_addralign
            h.extend_from_slice(&es.to_le_bytes());
            h
        };
        out.extend_from_slice(&[0u8; 64]); // SHN_UNDEF
        out.extend(sh(1, elf::SHT_STRTAB.0, dynstr_off, dynstr.len(), 0, 0, 0));
        out.extend(sh(
            9,
            elf::SHT_DYNAMIC.0,
            dynamic_off,
            dynamic.len(),
            1,
            0,
            16,
        ));
        out.extend(sh(
            18,
            elf::SHT_GNU_VERNEED.0,
            verneed_off,
            verneed.len(),
            1,
            versions.len() as u32,
            0,
        ));
        out.extend(sh(
            33,
            elf::SHT_STRTAB.0,
            shstrtab_off,
            shstrtab.len(),
            0,
            0,
            0,
        ));
        out
    }

    fn needs_of(data: &[u8]) -> ElfNeeds {
        parse_needs(Path::new("fixture"), data).unwrap()
    }

    const LIBC_2_17: &[&str] = &["GLIBC_2.2.5", "GLIBC_2.3", "GLIBC_2.17"];

    #[test]
    fn glibc_versions_parse_and_order() {
        assert_eq!(GlibcVersion::parse("2.17"), Some(GlibcVersion([2, 17, 0])));
        assert_eq!(GlibcVersion::parse("2.2.5"), Some(GlibcVersion([2, 2, 5])));
        for bad in ["2", "2.", "a.b", "2.17.1.1", "", "2..3"] {
            assert_eq!(GlibcVersion::parse(bad), None, "{bad}");
        }
        assert_eq!(
            GlibcVersion::from_symbol_version("GLIBC_2.34"),
            Some(GlibcVersion([2, 34, 0]))
        );
        assert_eq!(GlibcVersion::from_symbol_version("GLIBC_PRIVATE"), None);
        assert_eq!(GlibcVersion::from_symbol_version("GCC_3.0"), None);
        let v = |s| GlibcVersion::parse(s).unwrap();
        assert!(v("2.2.5") < v("2.3") && v("2.3") < v("2.17") && v("2.17") < v("2.18"));
        assert_eq!(v("2.2.5").to_string(), "2.2.5");
        assert_eq!(GLIBC_BASELINE.to_string(), "2.17");
    }

    #[test]
    fn reads_needed_libraries_versions_and_interpreter() {
        let data = fixture(
            Some(X86_64_INTERPRETER),
            &["libc.so.6", "libm.so.6"],
            &[
                ("libm.so.6", &["GLIBC_2.2.5"]),
                ("libc.so.6", &["GLIBC_2.2.5", "GLIBC_2.34"]),
            ],
        );
        let needs = needs_of(&data);
        assert_eq!(needs.interpreter.as_deref(), Some(X86_64_INTERPRETER));
        assert_eq!(needs.needed, ["libc.so.6", "libm.so.6"]);
        let pairs: Vec<(&str, &str)> = needs
            .versions
            .iter()
            .map(|v| (v.library.as_str(), v.version.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("libm.so.6", "GLIBC_2.2.5"),
                ("libc.so.6", "GLIBC_2.2.5"),
                ("libc.so.6", "GLIBC_2.34")
            ]
        );
        assert_eq!(needs.max_glibc(), GlibcVersion::parse("2.34"));
    }

    #[test]
    fn a_binary_within_the_baseline_has_no_problems() {
        let data = fixture(
            Some(X86_64_INTERPRETER),
            &["libc.so.6", "libpthread.so.0", "libdl.so.2"],
            &[
                ("libc.so.6", LIBC_2_17),
                ("libpthread.so.0", &["GLIBC_2.2.5"]),
            ],
        );
        assert_eq!(problems(&needs_of(&data), GLIBC_BASELINE), []);
        // A static binary needs nothing at all.
        let data = fixture(None, &[], &[]);
        assert_eq!(needs_of(&data), ElfNeeds::default());
        assert_eq!(problems(&needs_of(&data), GLIBC_BASELINE), []);
    }

    #[test]
    fn newer_glibc_private_versions_other_libraries_and_loaders_are_reported() {
        let data = fixture(
            Some("/nix/store/x/ld-linux-x86-64.so.2"),
            &["libc.so.6", "libssl.so.3", "libgcc_s.so.1"],
            &[
                ("libgcc_s.so.1", &["GCC_3.0"]),
                (
                    "libc.so.6",
                    &["GLIBC_2.34", "GLIBC_2.17", "GLIBC_2.18", "GLIBC_PRIVATE"],
                ),
            ],
        );
        let p = problems(&needs_of(&data), GLIBC_BASELINE);
        let text: Vec<String> = p.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "interpreter /nix/store/x/ld-linux-x86-64.so.2 (not /lib64/ld-linux-x86-64.so.2)",
                "libssl.so.3 (not part of glibc)",
                "libgcc_s.so.1 (not part of glibc)",
                "GLIBC_2.18 (of libc.so.6)",
                "GLIBC_2.34 (of libc.so.6)",
                "GLIBC_PRIVATE (of libc.so.6: not a public glibc version)",
            ]
        );
        // The same binary is fine against a newer baseline, except for what never is.
        let p = problems(&needs_of(&data), GlibcVersion::parse("2.34").unwrap());
        assert_eq!(p.len(), 4, "{p:?}");
    }

    #[test]
    fn check_portable_error_lists_every_problem_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bin");
        std::fs::write(
            &file,
            fixture(
                Some(X86_64_INTERPRETER),
                &["libc.so.6", "libz.so.1"],
                &[("libc.so.6", &["GLIBC_2.2.5", "GLIBC_2.28"])],
            ),
        )
        .unwrap();
        let e = check_portable(&file, GLIBC_BASELINE).unwrap_err();
        assert_eq!(
            tarmac_types::error_report::text_with_hint(&e),
            format!(
                "`{}` does not run on every host with glibc 2.17; it needs:\n  libz.so.1 (not part of glibc)\n  GLIBC_2.28 (of libc.so.6)\nhint: build it with scripts/build-portable.sh (links against glibc 2.17 with zig)",
                file.display()
            )
        );
        let ok = dir.path().join("ok");
        std::fs::write(
            &ok,
            fixture(
                Some(X86_64_INTERPRETER),
                &["libc.so.6"],
                &[("libc.so.6", LIBC_2_17)],
            ),
        )
        .unwrap();
        let needs = check_portable(&ok, GLIBC_BASELINE).unwrap();
        assert_eq!(needs.max_glibc(), Some(GLIBC_BASELINE));
    }

    #[test]
    fn non_elf_and_truncated_files_are_errors() {
        let e = parse_needs(Path::new("script.sh"), b"#!/bin/sh\necho hi\n").unwrap_err();
        assert_eq!(
            tarmac_types::error_report::text_with_hint(&e),
            "`script.sh` is not a 64-bit little-endian ELF file\nhint: pass a Linux x86_64 binary"
        );
        let mut data = fixture(Some(X86_64_INTERPRETER), &["libc.so.6"], &[]);
        data.truncate(data.len() - 100); // cut into the section headers
        let e = parse_needs(Path::new("cut"), &data).unwrap_err();
        assert!(
            matches!(e, ElfError::Malformed { .. }),
            "{e}: expected a malformed-ELF error"
        );
        let e = read_needs(Path::new("/nonexistent/tarmac-host")).unwrap_err();
        assert_eq!(e.to_string(), "cannot read `/nonexistent/tarmac-host`");
    }

    /// A real binary of this (Debian 12, glibc 2.36) system: coreutils' `true` needs
    /// GLIBC_2.34 (`__libc_start_main`), so the check must report it.
    #[test]
    fn this_systems_true_needs_a_newer_glibc_than_the_baseline() {
        let true_bin = ["/usr/bin/true", "/bin/true"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.is_file())
            .expect("/usr/bin/true");
        let needs = read_needs(true_bin).unwrap();
        assert!(needs.needed.iter().any(|n| n == "libc.so.6"), "{needs:?}");
        let max = needs.max_glibc().expect("true requires GLIBC_* versions");
        assert!(
            max >= GlibcVersion::parse("2.34").unwrap(),
            "this test expects a build machine with glibc >= 2.34; true needs only {max}"
        );
        let e = check_portable(true_bin, GLIBC_BASELINE).unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("GLIBC_{max} (of libc.so.6)")),
            "{e}"
        );
    }
}
