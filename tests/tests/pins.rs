//! Pinned maps: adopted across loads when compatible, refused when not.

use anyhow::{Context as _, Result};
use aya::maps::Array;
use floodgate::{
    daemon::engine::remove_pins,
    loader::{Capacity, Floodgate, LoadError},
    tables::IfaceSlot,
};
use floodgate_common::{LAYOUT_VERSION, Meta, Policy, Reason, Verdict, maps};
use floodgate_tests::{
    dut::{XDP_DROP, settings},
    lab::BpfFs,
    packets::{Frame, ip},
};

const CAP: Capacity = Capacity::new(1024, 1024, 1024, 1024);

fn run(fg: &Floodgate, frame: &[u8]) -> Result<u32> {
    use aya::programs::TestRun as _;
    let opts = aya::programs::TestRunOptions {
        data_in: Some(frame),
        ..Default::default()
    };
    Ok(fg.program()?.test_run(opts)?.return_value)
}

#[test]
fn a_second_load_adopts_counters_and_sources() -> Result<()> {
    let fs = BpfFs::new()?;
    let dir = fs.path().join("fg");
    let frame = Frame::udp(ip("198.18.5.5"), 80).build();
    // BPF_PROG_TEST_RUN frames come in on the loopback device.
    let lo = {
        let c = std::ffi::CString::new("lo")?;
        // SAFETY: a NUL-terminated string that outlives the call.
        unsafe { libc::if_nametoindex(c.as_ptr()) }
    };
    {
        let mut fg = Floodgate::load(CAP, Some(&dir))?;
        assert!(!fg.adopted());
        assert_eq!(fg.assign_iface_slot("other0", 4000)?, IfaceSlot::Slot(1));
        assert_eq!(fg.assign_iface_slot("lo", lo)?, IfaceSlot::Slot(2));
        fg.write_settings(&settings())?;
        fg.write_policies(
            &[Policy {
                // One packet a minute after the burst: loading the program a
                // second time takes about a second (the verifier), which must
                // not refill the bucket this test checks was carried over.
                packets: floodgate_common::Rate::new(1, 60_000_000_000, 3),
                ..Policy::default()
            }],
            0,
        )?;
        for _ in 0..5 {
            run(&fg, &frame)?;
        }
    }
    let fg = Floodgate::load(CAP, Some(&dir))?;
    assert!(fg.adopted());
    // The bucket, the counters and the policy carried over.
    assert_eq!(run(&fg, &frame)?, XDP_DROP);
    let counters = fg.counters()?;
    let names = fg.iface_names()?;
    let stats =
        floodgate::stats::Stats::from_counters(&counters, false).with_interfaces(&counters, &names);
    assert_eq!(stats.packets(Reason::RatePackets, Verdict::Drop), 3);
    // The interface slots and their counts carried over too.
    assert_eq!(names, vec![(1, "other0".to_owned()), (2, "lo".to_owned())]);
    assert_eq!(stats.by_interface["lo"].dropped.packets, 3);
    assert_eq!(stats.by_interface["lo"].passed.packets, 3);
    let mut fg = fg;
    assert_eq!(fg.assign_iface_slot("lo", lo)?, IfaceSlot::Slot(2));
    assert_eq!(fg.source(ip("198.18.5.5"))?.context("tracked")?.packets, 6);
    drop(fg);
    remove_pins(&dir)?;
    Ok(())
}

#[test]
fn pinned_maps_of_another_layout_are_refused_not_misread() -> Result<()> {
    let fs = BpfFs::new()?;
    let dir = fs.path().join("fg");
    {
        let mut fg = Floodgate::load(CAP, Some(&dir))?;
        let mut meta: Array<_, Meta> = fg.typed_map(maps::META)?;
        meta.set(
            0,
            Meta {
                layout_version: LAYOUT_VERSION + 1,
                ..Meta::default()
            },
            0,
        )?;
    }
    let err = Floodgate::load(CAP, Some(&dir))
        .err()
        .context("a newer layout must be refused")?;
    assert!(
        matches!(err, LoadError::LayoutMismatch { found, .. } if found == LAYOUT_VERSION + 1),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains(&format!("floodgate detach --pin-dir {}", dir.display())),
        "names the pin dir detach takes: {err}"
    );
    remove_pins(&dir)?;
    Ok(())
}
