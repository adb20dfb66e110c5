//! Choosing the backend: the user's `-b`, or for `auto` the best this
//! kernel allows, with one sentence saying why; and making it.
use std::path::Path;

use anyhow::{bail, Result};

use super::{
    ftrace::Ftrace, kprobe::Kprobe, kprobe_multi::KprobeMulti, programs::Maps,
    tracepoint::Tracepoint, Backend,
};
use crate::{
    cli::{BackendChoice, Tracer},
    discover::{Source, Vmlinux},
    par::Background,
    timing,
};

pub use super::{ftrace::probe as fentry_works, kprobe_multi::probe as kprobe_multi_works};

/// Whether this kernel can run kprobes: the perf kprobe PMU exists.
pub fn kprobes_available() -> bool {
    Path::new("/sys/bus/event_source/devices/kprobe/type").exists()
}

/// Where the backend `choice` will most likely read its addresses from,
/// read meanwhile (`None`: tracepoints have none). `auto` may end on
/// kprobes, which read `/proc/kallsyms` then (see [`Backend::addresses`]).
pub fn addresses_first(choice: BackendChoice) -> Option<Source> {
    match choice {
        BackendChoice::Tracepoint => None,
        BackendChoice::Kprobe => Some(Source::Kallsyms),
        _ => Some(Source::Ftrace),
    }
}

/// The backend for `-b` and `-t`, built; `auto` says which and why on
/// stderr. The fentry probe waits for the `maps` being created meanwhile
/// (whatever else comes with them) and loads a program against `vmlinux`.
pub fn pick<T: Send + 'static>(
    backend: BackendChoice,
    tracer: Tracer,
    vmlinux: &Vmlinux,
    maps: &mut Background<(Maps, T)>,
    verbose: bool,
) -> Result<Box<dyn Backend>> {
    let mut fentry_probe = || {
        let (maps, _) = maps.get().map_err(|e| format!("{e}"))?;
        fentry_works(maps, vmlinux)
    };
    let (choice, why) = choose(backend, tracer, &mut fentry_probe, &mut kprobe_multi_works)?;
    let built = build(choice, tracer)?;
    timing::step(verbose, "backend chosen");
    if backend == BackendChoice::Auto {
        eprintln!("Using the {} backend: {why}", built.name());
    }
    Ok(built)
}

/// Picks the backend: the user's, or for `auto` the best this kernel allows,
/// with a sentence saying why. The probes say why not when a feature does
/// not work; they load programs, so they run only when needed.
pub fn choose(
    choice: BackendChoice,
    tracer: Tracer,
    fentry_works: &mut dyn FnMut() -> Result<(), String>,
    kprobe_multi_works: &mut dyn FnMut() -> Result<(), String>,
) -> Result<(BackendChoice, String)> {
    let graph = tracer == Tracer::FunctionGraph;
    match choice {
        BackendChoice::Auto if graph => match kprobe_multi_works() {
            Ok(()) => Ok((
                BackendChoice::KprobeMulti,
                "the kernel has fprobe: one link attaches every function's entry, one every return"
                    .into(),
            )),
            Err(why) => without_fprobe(fentry_works, &why, true),
        },
        BackendChoice::Auto => match kprobe_multi_works() {
            Ok(()) => Ok((
                BackendChoice::KprobeMulti,
                "the kernel has fprobe: one link attaches every function".into(),
            )),
            Err(why) => without_fprobe(fentry_works, &why, false),
        },
        BackendChoice::Tracepoint if graph => {
            bail!("function_graph needs function returns, which tracepoints do not have: use -b kprobe-multi, -b kprobe or -b ftrace")
        }
        BackendChoice::Kprobe if !kprobes_available() => bail!(
            "the kprobe backend is unavailable: this kernel has no kprobes (CONFIG_KPROBES is off); try -b tracepoint"
        ),
        BackendChoice::KprobeMulti => match kprobe_multi_works() {
            Ok(()) => Ok((choice, "chosen with -b".into())),
            Err(why) => bail!("the kprobe-multi backend is unavailable: {why}; try {}", fallback()),
        },
        BackendChoice::Ftrace => match fentry_works() {
            Ok(()) => Ok((choice, "chosen with -b".into())),
            Err(why) => bail!("the ftrace backend is unavailable: {why}; try {}", fallback()),
        },
        _ => Ok((choice, "chosen with -b".into())),
    }
}

/// What to suggest when the chosen function backend is unavailable: kprobe
/// where the kernel has kprobes, else the tracepoints every kernel has.
fn fallback() -> &'static str {
    match kprobes_available() {
        true => "-b kprobe",
        false => "-b tracepoint",
    }
}

/// `auto` where kprobe-multi does not work: kprobe (with kretprobes for
/// function_graph), else ftrace (fentry, or fexit), else tracepoints, which
/// have no returns to give function_graph. The reason names no other
/// backend, so the line names only the chosen one.
fn without_fprobe(
    fentry_works: &mut dyn FnMut() -> Result<(), String>,
    no_fprobe: &str,
    graph: bool,
) -> Result<(BackendChoice, String)> {
    let (kprobes, fentry) = match graph {
        true => ("kprobes and kretprobes", "fexit"),
        false => ("kprobes", "fentry"),
    };
    if kprobes_available() {
        return Ok((
            BackendChoice::Kprobe,
            format!("the kernel has {kprobes} but {no_fprobe}"),
        ));
    }
    match fentry_works() {
        Ok(()) => Ok((BackendChoice::Ftrace, format!("no kprobes, but {fentry} works"))),
        Err(why) if graph => bail!(
            "function_graph needs function returns: this kernel has no kprobes (CONFIG_KPROBES is off), {no_fprobe}, and {why}"
        ),
        Err(why) => Ok((
            BackendChoice::Tracepoint,
            format!("no kprobes (CONFIG_KPROBES is off) and {why}"),
        )),
    }
}

/// Builds the backend for a choice made by [`choose`].
pub fn build(choice: BackendChoice, tracer: Tracer) -> Result<Box<dyn Backend>> {
    let graph = tracer == Tracer::FunctionGraph;
    Ok(match choice {
        BackendChoice::Kprobe => Box::new(Kprobe::new(graph)),
        BackendChoice::KprobeMulti => Box::new(KprobeMulti::new(graph)),
        BackendChoice::Ftrace => Box::new(Ftrace::new(graph)),
        BackendChoice::Tracepoint => Box::new(Tracepoint),
        BackendChoice::Auto => unreachable!("choose() resolves auto"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn works() -> Result<(), String> {
        Ok(())
    }

    fn no_fprobe() -> Result<(), String> {
        Err("no fprobe (CONFIG_FPROBE is off)".into())
    }

    fn not_asked() -> Result<(), String> {
        panic!("this probe should not run")
    }

    #[test]
    fn auto_prefers_kprobe_multi() {
        let (choice, why) = choose(
            BackendChoice::Auto,
            Tracer::Function,
            &mut not_asked,
            &mut works,
        )
        .unwrap();
        assert_eq!(choice, BackendChoice::KprobeMulti);
        assert!(why.contains("fprobe"));
    }

    #[test]
    fn function_graph_prefers_kprobe_multi() {
        let (choice, why) = choose(
            BackendChoice::Auto,
            Tracer::FunctionGraph,
            &mut not_asked,
            &mut works,
        )
        .unwrap();
        assert_eq!(choice, BackendChoice::KprobeMulti);
        assert!(why.contains("every return"), "{why}");
        for chosen in [BackendChoice::KprobeMulti, BackendChoice::Ftrace] {
            let (choice, _) =
                choose(chosen, Tracer::FunctionGraph, &mut works, &mut works).unwrap();
            assert_eq!(choice, chosen);
        }
        let err = choose(
            BackendChoice::Tracepoint,
            Tracer::FunctionGraph,
            &mut not_asked,
            &mut not_asked,
        )
        .unwrap_err();
        assert!(err.to_string().contains("-b kprobe-multi"), "{err}");
    }

    #[test]
    fn function_graph_without_fprobe_falls_back_to_kretprobes_or_fexit() {
        // Which one depends on this kernel's kprobes: ask it, as choose does.
        let result = choose(
            BackendChoice::Auto,
            Tracer::FunctionGraph,
            &mut works,
            &mut no_fprobe,
        );
        let (choice, why) = result.unwrap();
        match kprobes_available() {
            true => assert_eq!(choice, BackendChoice::Kprobe),
            false => assert_eq!(choice, BackendChoice::Ftrace),
        }
        assert!(!why.contains("kprobe-multi"), "{why}");
        if !kprobes_available() {
            let err = choose(
                BackendChoice::Auto,
                Tracer::FunctionGraph,
                &mut || Err("fentry is refused (EPERM)".into()),
                &mut no_fprobe,
            )
            .unwrap_err();
            assert!(err.to_string().contains("EPERM"), "{err}");
        }
    }

    #[test]
    fn kprobe_multi_on_a_kernel_without_it_is_one_sentence() {
        let err = choose(
            BackendChoice::KprobeMulti,
            Tracer::Function,
            &mut not_asked,
            &mut no_fprobe,
        )
        .unwrap_err();
        let err = err.to_string();
        assert!(
            err.starts_with(
                "the kprobe-multi backend is unavailable: no fprobe (CONFIG_FPROBE is off); try -b "
            ),
            "{err}"
        );
        assert!(!err.contains('\n'));
    }

    #[test]
    fn auto_without_fprobe_names_only_the_chosen_backend() {
        let (choice, why) = choose(
            BackendChoice::Auto,
            Tracer::Function,
            &mut || Err("fentry is refused (EPERM)".into()),
            &mut no_fprobe,
        )
        .unwrap();
        assert_ne!(choice, BackendChoice::KprobeMulti);
        assert!(!why.contains("kprobe-multi"), "{why}");
    }
}
