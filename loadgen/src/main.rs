//! `loadgen`: drives the gateway (or nchan, or nats-server) with scenarios
//! bounded in time and count, measures them, and writes the results under
//! `bench-results/`. See `loadgen --help`.
mod cli;
mod http;
mod monitor;
mod nodes;
mod payload;
mod procs;
mod publish;
mod report;
mod rtt;
mod scenario;
mod stats;
mod sys;
mod target;
mod tls;
mod token;
mod worker;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Scenario};
use scenario::{connect, direct, fanout, smoke, soak, storm, upgrade};

fn main() -> ExitCode {
    let cli = Cli::parse();
    sys::Machine::at_start();
    let c = &cli.common;
    let outcome = match cli.scenario {
        Scenario::Connect {
            conns,
            hold_secs,
            ramp_timeout_secs,
        } => connect::run(c, conns, hold_secs, ramp_timeout_secs),
        Scenario::Direct {
            conns,
            msg_rate,
            secs,
            size,
            pairs,
            presence_sample,
        } => direct::run(
            c,
            &direct::Direct {
                conns,
                msg_rate,
                secs,
                size,
                pairs,
                presence_sample,
            },
        ),
        Scenario::Fanout {
            conns,
            room_size,
            messages,
            pub_rate,
            size,
            drain_secs,
        } => fanout::run(
            c,
            &fanout::Fanout {
                conns,
                room_size,
                messages,
                pub_rate,
                size,
                drain_secs,
            },
        ),
        Scenario::Storm {
            conns,
            fraction,
            timeout_secs,
        } => storm::run(c, conns, fraction, timeout_secs),
        Scenario::Upgrade {
            conns,
            ping_ms,
            hold_secs,
            after_secs,
            rounds,
            upgrade_timeout_secs,
            ramp_timeout_secs,
        } => upgrade::run(
            c,
            &upgrade::Upgrade {
                conns,
                ping_ms,
                hold_secs,
                after_secs,
                rounds,
                upgrade_timeout_secs,
                ramp_timeout_secs,
            },
        ),
        Scenario::Soak {
            conns,
            msg_rate,
            secs,
            cut_every_secs,
            cut_fraction,
            window_secs,
            room_size,
            room_rate,
        } => soak::run(
            c,
            &soak::Soak {
                conns,
                msg_rate,
                secs,
                cut_every_secs,
                cut_fraction,
                window_secs,
                room_size,
                room_rate,
            },
        ),
        Scenario::Smoke { gateway_bin, conns } => {
            return match smoke::run(c, &gateway_bin, conns) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("loadgen: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    let o = match outcome {
        Ok(o) => o,
        Err(e) => {
            eprintln!("loadgen: error: {e:#}");
            return ExitCode::from(2);
        }
    };
    print!("{}", report::summary_text(&o));
    match report::write(&o, c) {
        Ok(Some(dir)) => println!("results: {}", dir.display()),
        Ok(None) => {}
        Err(e) => eprintln!("loadgen: cannot write results: {e:#}"),
    }
    if o.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
