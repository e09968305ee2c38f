//! `floodgate top --rules`: each rule, and an aggregate rule's use of its
//! shared budget.

use super::{Cli, Failure, call, print_json, render, stdout::outln, unexpected};
use crate::control::proto::{AggregateUse, BucketUse, Reply, Request};

fn bucket(b: Option<&BucketUse>) -> String {
    b.map_or_else(
        || "-".to_owned(),
        |b| format!("{} of {} left ({}/s)", b.left, b.burst, b.per_second),
    )
}

fn quota(a: &AggregateUse) -> String {
    a.quota.as_ref().map_or_else(
        || "-".to_owned(),
        |q| {
            format!(
                "{} of {} per {}",
                q.used,
                q.limit,
                render::secs(q.window_secs as f64)
            )
        },
    )
}

pub async fn print(cli: &Cli, json: bool) -> Result<(), Failure> {
    let reply = call(cli, Request::Rules).await?;
    let Reply::Rules { rules } = reply else {
        return Err(unexpected(&reply));
    };
    if json {
        return print_json(&rules);
    }
    let mut t = render::table(&[
        "rule", "cidrs", "sets", "budget", "packets", "syn", "quota", "passed", "dropped",
    ]);
    for r in rules {
        let sets = r.sets.iter().map(|s| format!("@{s}")).collect::<Vec<_>>();
        let mode = if r.monitor { " (monitor)" } else { "" };
        let mut row = vec![
            format!("{}{mode}", r.name),
            render::count(r.cidrs),
            sets.join(" "),
        ];
        match &r.aggregate {
            Some(a) => row.extend([
                "shared".to_owned(),
                bucket(a.packets.as_ref()),
                bucket(a.syn.as_ref()),
                quota(a),
                render::count(a.passed),
                render::count(a.dropped),
            ]),
            None => row.extend(
                ["per source".to_owned()]
                    .into_iter()
                    .chain(std::iter::repeat_n("-".to_owned(), 5)),
            ),
        }
        t.add_row(row);
    }
    outln!("{t}");
    Ok(())
}
