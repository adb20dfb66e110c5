//! The object's maps and globals. Each map is sized by its declaration in
//! `ipft_common::maps` (the constant of the same name, which userspace
//! names the map by), and checked at compile time against it: its kind,
//! and the sizes of its key and value types.
use core::mem::size_of;

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, PerCpuArray, PerfEventArray, StackTrace},
};
use ipft_common::{
    maps::{self, Kind},
    ArgSlot, Call, CaptureOffsets, CaptureRecord, Cloning, Config, Event, Offsets, PlaceOffsets,
};

/// Set by userspace before loading; read-only, so the verifier sees constants.
#[unsafe(no_mangle)]
pub(crate) static CONFIG: Config = Config {
    mark: 0,
    mask: 0,
    flags: 0,
    snaplen: 0,
    offsets: Offsets {
        skb_mark: 0,
        skb_len: 0,
        skb_data_len: 0,
        skb_protocol: 0,
        skb_head: 0,
        skb_network_header: 0,
        skb_end: 0,
        skb_dev: 0,
        dev_name: 0,
        shinfo_gso_size: 0,
        shinfo_gso_segs: 0,
        shinfo_gso_type: 0,
    },
    capture: CaptureOffsets {
        skb_mac_header: 0,
        skb_data: 0,
        skb_tail: 0,
    },
    place: PlaceOffsets {
        dev_ifindex: 0,
        dev_net: 0,
        net_inum: 0,
        skb_sk: 0,
        sk_net: 0,
    },
    skb_btf_id: 0,
    rdonly_cast_btf_id: 0,
    netns: 0,
    ifindex: 0,
};
const _: () = assert!(size_of::<Config>() == maps::CONFIG.size as usize);

/// `--track`: at least how many skbs `TRACKED` holds (raised before an
/// insert, lowered after a removal, so never below). The non-matching path
/// reads it and skips the hash look-up while it is 0: nothing is followed
/// most of the time, the packets looked for being few and short-lived, and
/// the look-up costs more than the rest of that path. A global (a word of
/// the object's `.bss` map) rather than a one-entry array: reading it is a
/// load from the map value's address, where an array took a look-up of a
/// dozen instructions on every call. Unmangled, so that its symbol is
/// the name `ipft_common::maps::TRACKED_COUNT` declares.
#[unsafe(no_mangle)]
pub(crate) static mut TRACKED_COUNT: u64 = 0;
const _: () = assert!(size_of::<u64>() == maps::TRACKED_COUNT.size as usize);

/// Fails the build when a map's type is not of the declared kind, or its
/// key or value type not of the declared size.
const fn fits<K, V>(declared: &maps::Map, kind: Kind) {
    assert!(
        declared.kind as u8 == kind as u8,
        "a map's type is not of the declared kind"
    );
    assert!(
        size_of::<K>() == declared.key_size as usize,
        "a map's key type is not of the declared size"
    );
    assert!(
        size_of::<V>() == declared.value_size as usize,
        "a map's value type is not of the declared size"
    );
}

/// The map static `$name`, with the entries of its declaration
/// `maps::$name`, checked against it by [`fits`]. Arrays' keys are `u32`.
macro_rules! declared {
    ($(#[$doc:meta])* $name:ident: HashMap<$key:ty, $value:ty>) => {
        $(#[$doc])*
        #[map]
        pub(crate) static $name: HashMap<$key, $value> =
            HashMap::with_max_entries(maps::$name.max_entries, 0);
        const _: () = fits::<$key, $value>(&maps::$name, Kind::HashMap);
    };
    ($(#[$doc:meta])* $name:ident: $kind:ident<$value:ty>) => {
        $(#[$doc])*
        #[map]
        pub(crate) static $name: $kind<$value> = $kind::with_max_entries(maps::$name.max_entries, 0);
        const _: () = fits::<u32, $value>(&maps::$name, Kind::$kind);
    };
}

/// The perf rings: their size is the number of CPUs, set by userspace.
#[map]
pub(crate) static EVENTS: PerfEventArray<Event> = PerfEventArray::new(0);
const _: () = {
    fits::<u32, u32>(&maps::EVENTS, Kind::PerfEventArray);
    assert!(maps::EVENTS.max_entries == 0);
};

declared! {
    /// `--track`: skbs that matched once, followed until they are freed.
    TRACKED: HashMap<u64, u8>
}

declared! {
    /// `--track`: identities of functions that free an skb (filled by userspace).
    FREES: HashMap<u64, u8>
}

declared! {
    /// Events the perf buffer had no room for, per CPU. The kernel's own
    /// PERF_RECORD_LOST reaches userspace only when a later event fits, so a
    /// loss at the end of a burst would go unreported without this.
    LOST: PerCpuArray<u64>
}

declared! {
    /// `-w`: each CPU's records being assembled, one per nesting level
    /// (`maps::CAPTURE_LEVELS`; a record does not fit the 512-byte stack).
    CAPTURES: PerCpuArray<CaptureRecord>
}

declared! {
    /// `-w`: how many captures this CPU is assembling now (the level of the
    /// next one). Interrupts nest, so each level's increment is undone before
    /// the level below resumes.
    CAPTURE_DEPTH: PerCpuArray<u32>
}

declared! {
    /// function_graph: traced calls in flight, and their skbs, so that their
    /// returns are reported (see `programs::graph`).
    ENTERED: HashMap<Call, u64>
}

/// Kernel stacks of traced calls (`--stack`, and fentry's drop programs,
/// whose caller userspace reads from the stack). Userspace shrinks it to
/// `STACKS_DROPS_ONLY` entries without `--stack`.
#[map]
pub(crate) static STACKS: StackTrace = StackTrace::with_max_entries(maps::STACKS.max_entries, 0);
const _: () = fits::<u32, [u64; maps::STACK_DEPTH]>(&maps::STACKS, Kind::StackTrace);

declared! {
    /// `--track`: identities of functions that clone or copy an skb.
    CLONERS: HashMap<u64, u8>
}

declared! {
    /// kprobe-multi: where the skb and drop reason of `kprobe_skb_any`'s
    /// functions are (`programs::args`), by function identity: first in the
    /// identity's slot (an array look-up the verifier inlines), else, for the
    /// few identities whose slot another took, in `ARGS` (a hash look-up).
    ARG_SLOTS: Array<ArgSlot>
}

declared! {
    /// kprobe-multi: see [`ARG_SLOTS`].
    ARGS: HashMap<u64, u16>
}

declared! {
    /// `--track` on kprobes: a cloning call in flight, from entry to return.
    CLONING: HashMap<u64, Cloning>
}

declared! {
    /// `--track`: how many skbs could not be tracked because `TRACKED` was full.
    TRACK_FULL: PerCpuArray<u64>
}
