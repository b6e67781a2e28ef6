//! `xcord-bench`: load an xcord server on this machine and report what it did.
//!
//! The server under test should run with `XCORD_RATE_LIMITS=off` (and, to register members
//! quickly, `XCORD_PASSWORD_HASH=bcrypt:4`). See docs/benchmarks.md.

use std::io::Write as _;
use std::time::Duration;

use clap::{Parser, Subcommand};
use xcord_bench::{Options, Report, VoiceOptions, run, run_voice};

/// Load generator for xcord (loopback targets only). Without a subcommand: members,
/// gateway fan-out, idle connections and REST reads.
#[derive(Debug, Parser)]
#[command(name = "xcord-bench", version)]
struct Cli {
    #[command(subcommand)]
    mode: Option<Mode>,
    /// The server, `http://127.0.0.1:PORT`.
    #[arg(long, global = true, default_value = "http://127.0.0.1:3000")]
    target: String,
    /// Another node for the gateway connections (`http://127.0.0.1:PORT`); posts still go
    /// to `--target`.
    #[arg(long)]
    gateway_target: Option<String>,
    /// The server's pid, to report its memory and CPU.
    #[arg(long, global = true)]
    server_pid: Option<u32>,
    /// Members in the server.
    #[arg(long, default_value_t = 100)]
    members: usize,
    /// Gateway connections that receive (at least one per member).
    #[arg(long, default_value_t = 0)]
    connections: usize,
    /// Messages to post (0 skips posting).
    #[arg(long, default_value_t = 3000)]
    messages: usize,
    /// Members that post.
    #[arg(long, default_value_t = 10)]
    senders: usize,
    /// POSTs in flight when posting flat out.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Messages per second in total (0: flat out).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Loopback source addresses for gateway connections.
    #[arg(long, global = true, default_value_t = 4)]
    sources: u8,
    /// Seconds of REST reads (0 skips them).
    #[arg(long, default_value_t = 5)]
    read_secs: u64,
    /// Concurrent REST readers.
    #[arg(long, default_value_t = 64)]
    read_clients: usize,
    /// Idle-connection counts to step through, e.g. `1000,5000,19000`.
    #[arg(long, value_delimiter = ',')]
    idle: Vec<usize>,
    /// Time limit of every phase, seconds.
    #[arg(long, global = true, default_value_t = 180)]
    phase_limit: u64,
    /// Also append the results as JSON lines to this file.
    #[arg(long, global = true)]
    json: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Voice rooms through the SFU: str0m peers sending Opus-sized RTP at 50 packets/s.
    Voice {
        /// Rooms (a server and its voice channel each); a list steps up through the
        /// counts, e.g. `25,50,100,200`, measuring at each.
        #[arg(long, value_delimiter = ',', default_value = "1")]
        rooms: Vec<usize>,
        /// Participants per room (2–99).
        #[arg(long, default_value_t = 5)]
        participants: usize,
        /// Seconds of each measurement window.
        #[arg(long, default_value_t = 20)]
        voice_secs: u64,
        /// Seconds of warm-up once everyone hears everyone.
        #[arg(long, default_value_t = 3)]
        warmup_secs: u64,
        /// Tasks driving the clients.
        #[arg(long, default_value_t = 2)]
        drivers: usize,
        /// Joins in flight.
        #[arg(long, default_value_t = 32)]
        join_concurrency: usize,
    },
    /// The job queue: `noop` jobs written into the server's database, run by its jobs role.
    Jobs {
        /// The server's database URL (as its XCORD_DATABASE_URL).
        #[arg(long)]
        database_url: String,
        /// Jobs due at one instant.
        #[arg(long, default_value_t = 10_000)]
        burst: usize,
        /// Jobs per second in the paced phase (0 skips it).
        #[arg(long, default_value_t = 1000)]
        rate: usize,
        /// Seconds of the paced phase.
        #[arg(long, default_value_t = 10)]
        secs: u64,
        /// Jobs per enqueueing transaction.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
    },
    /// The kernel's own cost of one loopback datagram to the sender: the floor under the
    /// SFU's CPU per forwarded packet.
    UdpFloor {
        /// Receiving sockets, sent to in turn.
        #[arg(long, default_value_t = 4)]
        receivers: usize,
        /// Datagrams sent each way.
        #[arg(long, default_value_t = 200_000)]
        packets: usize,
    },
}

fn write_report(report: &Report, json: Option<&std::path::Path>) -> std::process::ExitCode {
    print!("{}", report.table());
    println!();
    print!("{}", report.json_lines());
    if let Some(path) = json {
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(report.json_lines().as_bytes()));
        if let Err(e) = written {
            eprintln!("cannot write {}: {e}", path.display());
            return std::process::ExitCode::from(1);
        }
    }
    std::process::ExitCode::SUCCESS
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Some(Mode::Jobs {
        database_url,
        burst,
        rate,
        secs,
        batch,
    }) = &cli.mode
    {
        let opts = xcord_bench::jobs::JobsOptions {
            database_url: database_url.clone(),
            server_pid: cli.server_pid,
            burst: *burst,
            rate: *rate,
            secs: *secs,
            batch: *batch,
            phase_limit: Duration::from_secs(cli.phase_limit),
        };
        return match xcord_bench::jobs::run_jobs(&opts).await {
            Ok(report) => write_report(&report, cli.json.as_deref()),
            Err(e) => {
                eprintln!("xcord-bench jobs: {e:#}");
                std::process::ExitCode::from(1)
            }
        };
    }
    if let Some(Mode::UdpFloor { receivers, packets }) = cli.mode {
        return match xcord_bench::udp_floor::run_floor(receivers, packets) {
            Ok(rows) => {
                println!("| way | datagrams | sender CPU per datagram | datagrams/s |");
                println!("| --- | --- | --- | --- |");
                for r in rows {
                    println!(
                        "| {} | {} | {:.2} µs | {:.0} |",
                        r.way, r.sent, r.cpu_us, r.rate
                    );
                }
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("xcord-bench udp-floor: {e:#}");
                std::process::ExitCode::from(1)
            }
        };
    }
    if let Some(Mode::Voice {
        rooms,
        participants,
        voice_secs,
        warmup_secs,
        drivers,
        join_concurrency,
    }) = cli.mode
    {
        let opts = VoiceOptions {
            target: cli.target,
            server_pid: cli.server_pid,
            rooms,
            participants,
            warmup: Duration::from_secs(warmup_secs),
            secs: Duration::from_secs(voice_secs),
            drivers,
            concurrency: join_concurrency,
            sources: cli.sources,
            phase_limit: Duration::from_secs(cli.phase_limit),
        };
        return match run_voice(&opts).await {
            Ok(report) => write_report(&report, cli.json.as_deref()),
            Err(e) => {
                eprintln!("xcord-bench voice: {e:#}");
                std::process::ExitCode::from(1)
            }
        };
    }
    let opts = Options {
        target: cli.target,
        gateway_target: cli.gateway_target,
        server_pid: cli.server_pid,
        members: cli.members,
        connections: cli.connections,
        messages: cli.messages,
        senders: cli.senders,
        concurrency: cli.concurrency,
        rate: cli.rate,
        sources: cli.sources,
        read_secs: cli.read_secs,
        read_clients: cli.read_clients,
        idle_steps: cli.idle,
        phase_limit: Duration::from_secs(cli.phase_limit),
    };
    match run(&opts).await {
        Ok(report) => write_report(&report, cli.json.as_deref()),
        Err(e) => {
            eprintln!("xcord-bench: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
