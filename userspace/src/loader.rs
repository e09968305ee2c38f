//! Loading the XDP program, sizing and (optionally) pinning its maps, attaching it.

use std::path::{Path, PathBuf};

use aya::{
    Ebpf, EbpfError, EbpfLoader,
    maps::{Array, MapError},
    programs::{
        ProgramError, Xdp,
        xdp::{XdpLinkId, XdpMode},
    },
};
use floodgate_common::{LAYOUT_VERSION, Meta, PROGRAM_NAME, maps, set_table};
use tracing::{debug, warn};

use crate::{
    kernel,
    migrate::{self, Migration, Pinned},
    object,
};

/// Errors from loading or attaching the program.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "this floodgate binary carries no XDP program (it was built without \
         FLOODGATE_BUILD_EBPF=1); rebuild it with `cargo xtask build`"
    )]
    NoProgram,
    #[error(
        "loading the eBPF object failed: {0}; check the kernel log (dmesg) and that you run as root"
    )]
    Ebpf(#[from] EbpfError),
    #[error("the XDP program was rejected: {0}; run as root on a kernel ≥ 6.1 with BTF")]
    Program(#[source] ProgramError),
    /// Features the probes found missing, one line each (see `kernel::probe`).
    #[error("{}", .lines.join("\n"))]
    Unsupported { lines: Vec<String> },
    /// The verifier refused the program: its log in one line. The log itself
    /// is in `source` (and [`LoadError::verifier_log`]), never in this message.
    #[error("{summary}")]
    Rejected {
        summary: String,
        #[source]
        source: ProgramError,
    },
    #[error("map {name}: {}", crate::kernel::errno::describe(name, source))]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error(
        "pinned maps in {dir}/maps have layout version {found}; this binary uses {expected} and \
         migrates only from {}; start the release that made them, or run `floodgate detach \
         --pin-dir {dir}` to remove the old state (counters and bans are lost) and start again",
        expected - 1
    )]
    LayoutMismatch {
        dir: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error(
        "attaching XDP to {iface} ({mode}) failed: {source}; check the interface name with `ip link`"
    )]
    Attach {
        iface: String,
        mode: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("XDP link: {0}; detach with `floodgate detach` and start again")]
    Link(#[from] aya::programs::links::LinkError),
    #[error("pinning {path}: {source}; is the pin dir on a bpffs?")]
    Pin {
        path: PathBuf,
        #[source]
        source: aya::pin::PinError,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl LoadError {
    /// The verifier's full log, when it rejected the program.
    pub fn verifier_log(&self) -> Option<String> {
        match self {
            LoadError::Rejected {
                source: ProgramError::LoadError { verifier_log, .. },
                ..
            } => Some(verifier_log.to_string()),
            _ => None,
        }
    }
}

/// How to attach: `Auto` tries native (driver) mode and falls back to generic.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    #[default]
    Auto,
    Native,
    Generic,
}

/// The mode an interface ended up in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachedMode {
    Native,
    Generic,
}

impl AttachedMode {
    pub const fn name(self) -> &'static str {
        match self {
            AttachedMode::Native => "native",
            AttachedMode::Generic => "generic",
        }
    }

    const fn flags(self) -> XdpMode {
        match self {
            AttachedMode::Native => XdpMode::Driver,
            AttachedMode::Generic => XdpMode::Skb,
        }
    }
}

/// Map capacities chosen at load time: IPv4 sources and prefixes (ways of
/// their set tables, a multiple of `set_table::WAYS`), IPv6 ones, bans and
/// list entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    pub sources: u32,
    pub prefixes: u32,
    pub sources6: u32,
    pub prefixes6: u32,
    pub bans: u32,
    pub lists: u32,
}

/// The least entries of an IPv6 map.
const MIN_V6: u32 = 1024;

impl Capacity {
    /// The capacities for `sources` and `prefixes` tracked at once (IPv4 and
    /// IPv6), `bans` and `lists`: the tables get a way for each, rounded up
    /// to whole sets; the IPv6 maps a sixteenth (at least [`MIN_V6`]), as
    /// edge traffic is mostly IPv4 and an IPv6 entry costs half again as
    /// much (README "Memory").
    pub const fn new(sources: u32, prefixes: u32, bans: u32, lists: u32) -> Capacity {
        const fn v6(n: u32) -> u32 {
            if n / 16 < MIN_V6 { MIN_V6 } else { n / 16 }
        }
        Capacity {
            sources: set_table::sets_for(sources) * set_table::WAYS,
            prefixes: set_table::sets_for(prefixes) * set_table::WAYS,
            sources6: v6(sources),
            prefixes6: v6(prefixes),
            bans,
            lists,
        }
    }

    /// Sets of the IPv4 source table.
    pub fn source_sets(&self) -> u32 {
        set_table::sets_for(self.sources)
    }

    /// Sets of the IPv4 prefix table.
    pub fn prefix_sets(&self) -> u32 {
        set_table::sets_for(self.prefixes)
    }
}

impl Default for Capacity {
    fn default() -> Self {
        let sources = floodgate_common::DEFAULT_SOURCE_CAPACITY;
        Capacity::new(
            sources,
            floodgate_common::default_prefix_capacity(sources),
            floodgate_common::default_ban_capacity(sources),
            floodgate_common::DEFAULT_LIST_CAPACITY,
        )
    }
}

/// What the program is given at load besides its maps: the set tables' seed
/// and sizes (read-only data the verifier sees as constants).
#[derive(Clone, Copy, Debug)]
pub struct Globals {
    pub table_seed: u64,
    pub source_sets: u32,
    pub prefix_sets: u32,
}

impl Globals {
    pub fn new(capacity: &Capacity, table_seed: u64) -> Globals {
        Globals {
            table_seed,
            source_sets: capacity.source_sets(),
            prefix_sets: capacity.prefix_sets(),
        }
    }
}

/// A loader that sizes the maps to `capacity` and sets `globals` (the tests
/// load earlier programs with it too: a global is set only where the object
/// has it).
pub fn sized_loader<'a>(capacity: &Capacity, globals: &'a Globals) -> EbpfLoader<'a> {
    let mut loader = EbpfLoader::new();
    loader
        .override_global("TABLE_SEED", &globals.table_seed, false)
        .override_global("SOURCE_SETS", &globals.source_sets, false)
        .override_global("PREFIX_SETS", &globals.prefix_sets, false)
        .map_max_entries(maps::SOURCES, capacity.source_sets())
        .map_max_entries(maps::PREFIXES, capacity.prefix_sets())
        .map_max_entries(maps::SOURCES6, capacity.sources6)
        .map_max_entries(maps::PREFIXES6, capacity.prefixes6)
        .map_max_entries(maps::BANS, capacity.bans)
        .map_max_entries(maps::RULES, capacity.lists)
        .map_max_entries(maps::ALLOW, capacity.lists)
        .map_max_entries(maps::BLOCK, capacity.lists);
    loader
}

/// Where pinned maps live below a pin directory.
pub fn map_pin_dir(pin_dir: &Path) -> PathBuf {
    pin_dir.join("maps")
}

/// The loaded program and its maps.
pub struct Floodgate {
    ebpf: Ebpf,
    /// Pinned state was found and adopted (counters, bans, sources survive).
    adopted: bool,
    /// Pinned state to move into these (new) maps before they are attached.
    migration: Option<Migration>,
    /// The capacities the maps were created with (pinned ones included).
    capacity: Capacity,
    /// The set tables' hash seed (`Meta::table_seed`).
    table_seed: u64,
    /// The settings last written, before the bits below are added.
    pub(crate) settings: Option<floodgate_common::Settings>,
    /// `SETTINGS_HAS_*` bits for the tries that have entries.
    pub(crate) list_flags: u32,
    /// Latest end of a ban inserted from userspace.
    pub(crate) user_ban_horizon_ns: u64,
    /// What each trie holds, as last written (None: not known yet, or a write
    /// failed): a list change is diffed against it, not against a walk of the
    /// kernel's trie. The daemon is the tries' only writer.
    pub(crate) written: crate::tables::Written,
    /// The IPv4 prefix table mapped writable, made on the first ban
    /// userspace inserts and kept: mapping 12 MB per ban made 100 000
    /// CrowdSec decisions take 10 s to apply.
    pub(crate) prefix_view: Option<crate::tables::set_view::SetView>,
}

impl Floodgate {
    /// Loads the program. With `pin_dir`, maps are pinned below it and maps
    /// already pinned there are adopted after their layout version is checked.
    /// The kernel is probed first, so one it cannot run on is told so in a line
    /// per missing feature.
    pub fn load(capacity: Capacity, pin_dir: Option<&Path>) -> Result<Floodgate, LoadError> {
        if object::is_stub() {
            return Err(LoadError::NoProgram);
        }
        let release = kernel::release();
        let probed = kernel::probe::check(&release);
        for w in &probed.warnings {
            warn!("{w}");
        }
        if !probed.missing.is_empty() {
            return Err(LoadError::Unsupported {
                lines: probed.missing,
            });
        }
        let mut adopted = false;
        let mut table_seed = fresh_seed();
        let mut pin_paths = None;
        let mut migration = None;
        if let Some(pin_dir) = pin_dir {
            let dir = map_pin_dir(pin_dir);
            let io = |path: &Path| {
                let path = path.to_owned();
                move |source| LoadError::Io { path, source }
            };
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            let pins = match migrate::inspect(&dir, &capacity)? {
                Pinned::Nothing => dir,
                Pinned::Adopt => {
                    adopted = true;
                    // The tables stay hashed as they were made.
                    table_seed = migrate::pinned_meta(&dir)?.map_or(0, |m| m.table_seed);
                    dir
                }
                Pinned::Migrate(m) => {
                    // Fresh maps beside the old ones; the daemon fills them,
                    // swaps the program, then moves them into place.
                    let staging = migrate::staging_dir(pin_dir);
                    migrate::remove_dir(&staging).map_err(io(&staging))?;
                    std::fs::create_dir_all(&staging).map_err(io(&staging))?;
                    migration = Some(m);
                    staging
                }
            };
            pin_paths = Some(pins);
        }
        let globals = Globals::new(&capacity, table_seed);
        let mut loader = sized_loader(&capacity, &globals);
        if let Some(pins) = &pin_paths {
            for name in maps::ALL {
                loader.map_pin_path(name, pins.join(name));
            }
        }
        let mut ebpf = loader.load(object::OBJECT)?;
        let program: &mut Xdp = program_mut(&mut ebpf)?;
        program
            .load()
            .map_err(|e| kernel::verifier::rejected(e, &release))?;
        let mut fg = Floodgate {
            ebpf,
            adopted,
            migration,
            capacity,
            table_seed,
            settings: None,
            list_flags: 0,
            user_ban_horizon_ns: 0,
            written: crate::tables::Written::default(),
            prefix_view: None,
        };
        if adopted {
            // Bans inserted from userspace by the last run stay enforced: the
            // program skips ban lookups past this horizon, so starting it at 0
            // would let a `bans add` ban lapse at the first settings write.
            fg.user_ban_horizon_ns = fg.settings()?.user_ban_horizon_ns;
        } else {
            fg.write_meta(capacity)?;
        }
        Ok(fg)
    }

    /// The capacities of the loaded maps: what the kernel holds, whatever a
    /// later config asks for.
    pub fn capacity(&self) -> Capacity {
        self.capacity
    }

    /// The set tables' hash seed.
    pub fn table_seed(&self) -> u64 {
        self.table_seed
    }

    /// True when pinned state from an earlier run was adopted.
    pub fn adopted(&self) -> bool {
        self.adopted
    }

    /// Marks pinned state as carried over into these maps (a migration).
    pub(crate) fn set_adopted(&mut self) {
        self.adopted = true;
    }

    /// Pinned state these new maps are to take over (once, by the daemon).
    pub fn take_migration(&mut self) -> Option<Migration> {
        self.migration.take()
    }

    fn write_meta(&mut self, capacity: Capacity) -> Result<(), LoadError> {
        let table_seed = self.table_seed;
        let mut meta: Array<_, Meta> = self.typed_map(maps::META)?;
        let value = Meta {
            layout_version: LAYOUT_VERSION,
            _pad: 0,
            source_capacity: u64::from(capacity.sources),
            table_seed,
        };
        meta.set(0, value, 0).map_err(|source| LoadError::Map {
            name: maps::META,
            source,
        })
    }

    /// Attaches to `iface`. `Auto` tries native mode first and falls back to
    /// generic (skb) mode with a log line when the driver refuses. The link is
    /// owned by the program (detached when it is dropped) unless taken with its id.
    pub fn attach(
        &mut self,
        iface: &str,
        mode: AttachMode,
    ) -> Result<(AttachedMode, XdpLinkId), LoadError> {
        let program = program_mut(&mut self.ebpf)?;
        let try_attach = |program: &mut Xdp, m: AttachedMode| {
            program
                .attach(iface, m.flags())
                .map_err(|source| LoadError::Attach {
                    iface: iface.to_owned(),
                    mode: m.name(),
                    source,
                })
        };
        let (attached, id) = match mode {
            AttachMode::Native => (
                AttachedMode::Native,
                try_attach(program, AttachedMode::Native)?,
            ),
            AttachMode::Generic => (
                AttachedMode::Generic,
                try_attach(program, AttachedMode::Generic)?,
            ),
            AttachMode::Auto => match try_attach(program, AttachedMode::Native) {
                Ok(id) => (AttachedMode::Native, id),
                Err(e) => {
                    warn!(iface, error = %e, "native XDP refused, falling back to generic mode");
                    (
                        AttachedMode::Generic,
                        try_attach(program, AttachedMode::Generic)?,
                    )
                }
            },
        };
        debug!(iface, mode = attached.name(), "XDP program attached");
        Ok((attached, id))
    }

    /// The program, for BPF_PROG_TEST_RUN.
    pub fn program(&self) -> Result<&Xdp, LoadError> {
        self.ebpf
            .program(PROGRAM_NAME)
            .ok_or(LoadError::Program(ProgramError::NotLoaded))?
            .try_into()
            .map_err(LoadError::Program)
    }

    /// Detaches a link made by [`Floodgate::attach`].
    pub fn detach(&mut self, id: XdpLinkId) -> Result<(), LoadError> {
        program_mut(&mut self.ebpf)?
            .detach(id)
            .map_err(LoadError::Program)
    }

    /// The underlying aya handle, read-only.
    pub fn ebpf_ref(&self) -> &Ebpf {
        &self.ebpf
    }

    /// The underlying aya handle.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// A typed view of one of the program's maps.
    pub fn typed_map<'a, T>(&'a mut self, name: &'static str) -> Result<T, LoadError>
    where
        T: TryFrom<&'a mut aya::maps::Map, Error = MapError>,
    {
        let map = self.ebpf.map_mut(name).ok_or(LoadError::Map {
            name,
            source: MapError::InvalidName { name: name.into() },
        })?;
        T::try_from(map).map_err(|source| LoadError::Map { name, source })
    }

    /// A read-only typed view of one of the program's maps.
    pub fn typed_map_ref<'a, T>(&'a self, name: &'static str) -> Result<T, LoadError>
    where
        T: TryFrom<&'a aya::maps::Map, Error = MapError>,
    {
        let map = self.ebpf.map(name).ok_or(LoadError::Map {
            name,
            source: MapError::InvalidName { name: name.into() },
        })?;
        T::try_from(map).map_err(|source| LoadError::Map { name, source })
    }
}

/// A secret seed for new tables, from the kernel's random pool without
/// waiting for it (GRND_INSECURE): a daemon started early in boot, or in a VM
/// with no entropy source, must not block until the pool is initialised — a
/// seed only has to be unknown to senders. The clock when even that fails.
fn fresh_seed() -> u64 {
    let mut buf = [0u8; 8];
    // SAFETY: `buf` is 8 writable bytes.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), libc::GRND_INSECURE) };
    if n == 8 {
        u64::from_ne_bytes(buf) | 1
    } else {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        t.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1
    }
}

pub(crate) fn program_mut(ebpf: &mut Ebpf) -> Result<&mut Xdp, LoadError> {
    ebpf.program_mut(PROGRAM_NAME)
        .ok_or(LoadError::Program(ProgramError::NotLoaded))?
        .try_into()
        .map_err(LoadError::Program)
}
