//! One section per benchmark in RESULTS.md: when and under which accelerator its
//! figures were measured, a link to its own page, and its figures.

use std::fmt::Write as _;

use super::All;
use crate::report::Machine;
use crate::{
    assembly, churn, cluster, debug_api, footprint, go_build, image_size, images, rebuild,
    recovery, services, timeline,
};

pub fn render(all: &All) -> String {
    let mut text = String::new();
    if let Some(r) = &all.assembly {
        section(&mut text, "Image assembly", assembly::NAME, &r.machine);
        text.push_str(&assembly::body(r, "###"));
    }
    if let Some(r) = &all.rebuild {
        section(&mut text, "Incremental rebuild", rebuild::NAME, &r.machine);
        text.push_str(&rebuild::body(r));
    }
    if let Some(r) = &all.churn {
        section(&mut text, "Rebuild churn", churn::NAME, &r.machine);
        text.push_str(&churn::body(r));
    }
    if let Some(r) = &all.timeline {
        section(&mut text, "Boot timeline", timeline::NAME, &r.machine);
        text.push_str("![boot timeline](results/boot-timeline.svg)\n\n");
        text.push_str(&timeline::milestones(r));
    }
    if let Some(r) = &all.recovery {
        section(&mut text, "Recovery", recovery::NAME, &r.machine);
        text.push_str(&recovery::body(r));
    }
    if let Some(r) = &all.services {
        section(&mut text, "Services", services::NAME, &r.machine);
        text.push_str(&services::body(r));
    }
    if let Some(r) = &all.images {
        section(&mut text, "Images", images::NAME, &r.machine);
        text.push_str(&images::body(r));
    }
    if let Some(r) = &all.cluster {
        section(&mut text, "Clusters", cluster::NAME, &r.machine);
        text.push_str(&cluster::body(r));
    }
    if let Some(r) = &all.footprint {
        section(&mut text, "Footprint", footprint::NAME, &r.machine);
        text.push_str(&footprint::body(r));
    }
    if let Some(r) = &all.image_size {
        section(&mut text, "Image size", image_size::NAME, &r.machine);
        text.push_str(&image_size::body(r));
    }
    if let Some(r) = &all.debug_api {
        section(&mut text, "Debug API", debug_api::NAME, &r.machine);
        text.push_str(&debug_api::body(r));
    }
    if let Some(r) = &all.go_build {
        section(&mut text, "Go components build", go_build::NAME, &r.machine);
        text.push_str(&go_build::body(r));
    }
    text
}

fn section(text: &mut String, title: &str, name: &str, machine: &Machine) {
    let accel = match machine.accel.as_str() {
        "none" => String::new(),
        accel => format!(", accel {accel}"),
    };
    let _ = writeln!(
        text,
        "\n## {title}\n\n_Measured {}{accel}; details: [results/{name}.md](results/{name}.md)._\n",
        machine.date
    );
}
