//! The `vscope-etl` binary: parses the command line, sets up logging and signals, calls the
//! library and turns the outcome into an exit code (0 done, 1 failed units, 2 configuration,
//! 3 authentication).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::watch;

use vscope_etl::catalogue::Catalogue;
use vscope_etl::cli::{
    CheckArgs, Cli, Command, CompactArgs, InventoryArgs, MetricsArgs, PlanArgs, RunArgs, SimArgs,
    StatusArgs, TokenArgs, VacuumArgs, ValidateArgs,
};
use vscope_etl::config;
use vscope_etl::error::{EXIT_CONFIG, EXIT_FAILED_UNITS, EXIT_OK, Error};
use vscope_etl::maintenance::compact::{CompactOptions, CompactReport, DEFAULT_TARGET_BYTES};
use vscope_etl::run::{self, Progress, ProgressFn, RunOptions};
use vscope_etl::sim::SimConfig;

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| cli.log.clone());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run_command(args).await,
            Command::Plan(args) => plan(args).await,
            Command::Validate(args) => validate(args),
            Command::Check(args) => check(args).await,
            Command::Inventory(args) => inventory(args).await,
            Command::Status(args) => status(args).await,
            Command::Vacuum(args) => vacuum(args).await,
            Command::Compact(args) => compact(args).await,
            Command::Token(args) => token(args).await,
            Command::Metrics(args) => metrics(args),
            Command::Sim(args) => sim(args).await,
            #[cfg(feature = "report")]
            Command::Report(args) => report_command(args).await,
        }
    });
    ExitCode::from(code)
}

/// Parses `--now`; an invalid value is reported and gives the configuration exit code.
fn parse_now(now: Option<&str>) -> Result<Option<i64>, u8> {
    match now {
        None => Ok(None),
        Some(s) => {
            vscope_etl::semantics::time::parse_export_time(s, chrono::Utc::now().timestamp_millis())
                .map(Some)
                .map_err(|e| {
                    eprintln!("error: --now: {e}");
                    EXIT_CONFIG
                })
        }
    }
}

/// `--shard` (and `--shard auto`'s scheduler variables); an error is reported and gives the
/// configuration exit code.
fn resolve_shard(
    range: &vscope_etl::cli::RangeArgs,
) -> Result<Option<vscope_etl::plan::Shard>, u8> {
    range
        .resolve_shard(|var| std::env::var(var).ok())
        .map_err(|e| {
            eprintln!("error: {e}");
            EXIT_CONFIG
        })
}

fn report(err: &Error) -> u8 {
    eprintln!("error: {err}");
    err.exit_code()
}

/// `sim --replay DIR`: serves recorded answers; prints the URL first, like `sim`, once the
/// server is ready (answers compressed ahead with --precompress).
async fn sim_replay(
    dir: std::path::PathBuf,
    options: vscope_etl::sim::ReplayOptions,
    listen: std::net::SocketAddr,
) -> u8 {
    let server = match vscope_etl::sim::ReplayServer::open(dir.clone(), options).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: replay of {} failed: {e}", dir.display());
            return EXIT_CONFIG;
        }
    };
    let Some((listener, addr)) = bind_announced(listen).await else {
        return EXIT_CONFIG;
    };
    eprintln!(
        "replaying answers of {} on http://{addr}; Ctrl-C to stop",
        dir.display()
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match server.serve_until(listener, shutdown).await {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("error: replay failed: {e}");
            EXIT_CONFIG
        }
    }
}

/// A watch that turns true on SIGINT or SIGTERM; a second signal exits at once.
fn cancel_on_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        for n in 0.. {
            let term_recv = async {
                match term.as_mut() {
                    Some(t) => {
                        t.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term_recv => {}
            }
            if n > 0 {
                eprintln!("second signal: exiting now");
                std::process::exit(130);
            }
            eprintln!(
                "signal received: abandoning the current window and stopping (send again to exit now)"
            );
            let _ = tx.send(true);
        }
    });
    rx
}

fn progress_display(enabled: bool) -> (ProgressFn, ProgressBar) {
    let bar = if enabled {
        ProgressBar::new(0)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} units  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let b = bar.clone();
    let points = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let f: ProgressFn = Arc::new(move |p: &Progress| match p {
        Progress::Planned { units, .. } => b.set_length(*units as u64),
        Progress::UnitDone { points: n } => {
            let total = points.fetch_add(*n, std::sync::atomic::Ordering::Relaxed) + n;
            b.inc(1);
            b.set_message(format!("{total} points"));
        }
        Progress::Points { points: n } => {
            let total = points.fetch_add(*n, std::sync::atomic::Ordering::Relaxed) + n;
            b.set_message(format!("{total} points"));
        }
        Progress::WindowDone { .. } => {}
    });
    (f, bar)
}

/// Keeps glibc's allocator from holding memory the run has given back (issue 18): answers,
/// decoded columns and pages are large, short-lived buffers allocated on several threads. By
/// default glibc gives each thread its own arena and, after the first large buffer is freed,
/// raises its mmap threshold so later ones come from those arenas, where they fragment: the peak
/// RSS of a day with ten times the VMs grew from 70 to 115 MB although what was live did not
/// (`tests/e2e/memory.rs`). A fixed 1 MiB mmap threshold returns large buffers to the system
/// when freed, and one arena keeps freed columns for the next answer, whichever thread decodes
/// it (two arenas: 67 to 90 MB, same time; once answers were decoded as they stream in, one
/// arena instead of two took a 1,000-VM day from 259-291 to 223-226 MB at the same speed,
/// `benches/pcc.sh`, 128 MiB budget). A lower threshold
/// trades speed for memory: at 64 KiB a 1,000-VM day (`benches/pcc.sh`) peaked at 430-550 MB
/// instead of 610-820 MB, but `benches/e2e.sh` lost 30 % of its speed (8.8 instead of
/// 12.3 M points/s: mid-size buffers mapped and unmapped by the thousand); 256 KiB lost as much
/// and saved nothing. A user's `MALLOC_MMAP_THRESHOLD_` or `MALLOC_ARENA_MAX` wins.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
            // SAFETY: mallopt changes allocator parameters; called before any thread starts.
            unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20) };
        }
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            // SAFETY: as above.
            unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
        }
    }
}

async fn run_command(args: RunArgs) -> u8 {
    let pipeline = match config::load(&args.pipeline) {
        Ok(p) => p,
        Err(e) => return report(&e.into()),
    };
    let shard = match resolve_shard(&args.range) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let opts = RunOptions {
        start: args.range.start,
        end: args.range.end,
        shard,
        dry_run: args.dry_run,
        force: args.force,
        now_ms: match parse_now(args.range.now.as_deref()) {
            Ok(n) => n,
            Err(code) => return code,
        },
    };
    // Test hook (tests/e2e/faults.rs): a panic with the whole source configuration in its
    // message, to prove that a panic cannot print the token or the API v6 secrets.
    if std::env::var_os("VSCOPE_ETL_TEST_PANIC").is_some() {
        panic!(
            "VSCOPE_ETL_TEST_PANIC is set; source: {:?}",
            pipeline.source
        );
    }
    let (progress, bar) = progress_display(!args.json && std::io::stderr().is_terminal());
    let sharded = opts.shard.is_some();
    let result = run::run(&pipeline, &opts, progress, cancel_on_signal()).await;
    bar.finish_and_clear();
    match result {
        Err(e) => report(&e),
        Ok(mut r) => {
            if args.dry_run {
                print!("{}", r.plan.describe());
                return EXIT_OK;
            }
            // Month layouts: the months this run finished are merged into their month files
            // (unsharded runs that succeeded, unless --no-compact; a shard leaves it to
            // `vscope-etl compact`).
            let mut compacted = Vec::new();
            if pipeline.sink.period() == config::PartitionPeriod::Month
                && !sharded
                && !args.no_compact
                && r.exit_code == EXIT_OK
            {
                match compact_finished_months(&pipeline).await {
                    Ok(c) => compacted = c.periods,
                    Err(e) => {
                        eprintln!(
                            "the run's windows are committed, but compacting its finished months \
                             failed: {e:#}; the dataset is whole once the next run or \
                             `vscope-etl compact` completes it"
                        );
                        r.exit_code = EXIT_FAILED_UNITS;
                    }
                }
            }
            let m = &r.manifest;
            if args.json {
                let summary = serde_json::json!({
                    "pipeline": m.pipeline,
                    "run_id": m.run_id,
                    "exit_code": r.exit_code,
                    "windows_planned": m.windows_planned,
                    "windows_committed": m.windows_committed,
                    "windows_staged": m.windows_staged,
                    "shard": m.shard,
                    "units_planned": m.units_planned,
                    "units_done": m.units_done,
                    "series": m.series,
                    "points": m.points.points,
                    "rows": m.rows(),
                    "files": m.files.len(),
                    "bytes": m.bytes_written(),
                    "requests": m.requests,
                    "retries": m.retries,
                    "splits": m.splits,
                    "throttled": m.throttled,
                    "throttle_wait_seconds": m.throttle_wait_seconds,
                    "bytes_received": m.bytes_received,
                    "bytes_on_wire": m.bytes_on_wire,
                    "failures": m.failures.len(),
                    "seconds": m.seconds,
                    "manifest": r.manifest_path,
                    "compacted": compacted,
                });
                println!("{summary}");
            } else {
                eprintln!(
                    "{}: {}/{} units, {} series, {} points, {} rows in {} files ({} bytes), {}/{} windows committed, {:.1} s",
                    m.pipeline,
                    m.units_done,
                    m.units_planned,
                    m.series,
                    m.points.points,
                    m.rows(),
                    m.files.len(),
                    m.bytes_written(),
                    m.windows_committed,
                    m.windows_planned,
                    m.seconds
                );
                if m.windows_staged > 0 {
                    eprintln!(
                        "shard {}: {} window(s) staged, published by the last shard to stage \
                         them (`vscope-etl status` shows which shards are missing)",
                        m.shard.as_deref().unwrap_or("?"),
                        m.windows_staged
                    );
                }
                if m.throttled > 0 {
                    eprintln!(
                        "the server throttled {} request(s) (429); requests waited {:.1} s in all, \
                         in flight down to {}",
                        m.throttled, m.throttle_wait_seconds, m.min_in_flight
                    );
                }
                for f in &m.failures {
                    eprintln!(
                        "failed: {} {} [{}, {}): {}",
                        f.metric,
                        f.datacenter.as_deref().unwrap_or("(all datacenters)"),
                        f.window_start,
                        f.window_end,
                        f.error
                    );
                }
                if let Some(reason) = &m.aborted {
                    eprintln!("stopped: {reason}");
                }
                if !compacted.is_empty() {
                    eprintln!("compacted into month files: {}", compacted.join(", "));
                }
                if let Some(p) = &r.manifest_path {
                    eprintln!(
                        "manifest: {}/{}",
                        pipeline.sink.url.trim_end_matches('/'),
                        p
                    );
                }
            }
            r.exit_code
        }
    }
}

async fn plan(args: PlanArgs) -> u8 {
    let pipeline = match config::load(&args.pipeline) {
        Ok(p) => p,
        Err(e) => return report(&e.into()),
    };
    let shard = match resolve_shard(&args.range) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let opts = RunOptions {
        start: args.range.start,
        end: args.range.end,
        shard,
        dry_run: true,
        force: false,
        now_ms: match parse_now(args.range.now.as_deref()) {
            Ok(n) => n,
            Err(code) => return code,
        },
    };
    let conn = match run::connect(&pipeline).await {
        Ok(c) => c,
        Err(e) => return report(&e),
    };
    let now = opts
        .now_ms
        .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
    if let Err(e) = vscope_etl::run::check_token(&pipeline, &conn.client, now).await {
        return report(&e);
    }
    // The plan of a real run depends on the ledger (incremental runs, skipped windows): the
    // same sink (with its [sink.s3] settings) and the same ledger a run reads.
    let sink = match vscope_etl::load::Sink::open_with(&pipeline.sink.url, &pipeline.sink.s3) {
        Ok(sink) => sink,
        Err(e) => return report(&e.into()),
    };
    let ledger = match vscope_etl::load::state::Ledger::load(&sink, &pipeline.name).await {
        Ok(l) => Some(l),
        Err(e) => return report(&e.into()),
    };
    // Inventory discovery plans from the live objects.
    let inventory = match (&conn.ovh, pipeline.source.discovery) {
        (Some(api), config::Discovery::Inventory) => {
            match run::fetch_inventory(&pipeline, api, now).await {
                Ok(inv) => Some(inv),
                Err(e) => return report(&Error::Ovh(e)),
            }
        }
        _ => None,
    };
    match run::build_plan(
        &pipeline,
        &conn.client,
        &opts,
        ledger.as_ref(),
        &Default::default(),
        now,
        inventory.as_ref(),
    )
    .await
    {
        Ok(p) => {
            println!(
                "pipeline {} (dialect {})",
                pipeline.name,
                conn.client.dialect()
            );
            print!("{}", p.describe());
            EXIT_OK
        }
        Err(e) => report(&e),
    }
}

/// The pipeline at `path` and the clock (`--now`, else the system's); an error is reported
/// and gives the exit code.
fn pipeline_and_clock(
    path: &std::path::Path,
    now: Option<&str>,
) -> Result<(config::Pipeline, i64), u8> {
    let pipeline = config::load(path).map_err(|e| report(&e.into()))?;
    let now = parse_now(now)?.unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
    Ok((pipeline, now))
}

async fn check(args: CheckArgs) -> u8 {
    let (pipeline, now) = match pipeline_and_clock(&args.pipeline, args.now.as_deref()) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let result = vscope_etl::preflight::check(&pipeline, now).await;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&result).expect("check report serializes")
        );
    } else {
        println!("pipeline {}", pipeline.name);
        print!("{}", result.describe());
    }
    result.exit_code
}

fn validate(args: ValidateArgs) -> u8 {
    let mut code = EXIT_OK;
    for path in &args.pipelines {
        match config::load(path) {
            Ok(p) => {
                let tables: Vec<&str> = p.tables.iter().map(|t| t.name.as_str()).collect();
                println!(
                    "{}: ok (pipeline {}, tables {})",
                    path.display(),
                    p.name,
                    tables.join(", ")
                );
            }
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                code = EXIT_CONFIG;
            }
        }
    }
    code
}

fn metrics(args: MetricsArgs) -> u8 {
    let c = Catalogue::builtin();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(c.metrics()).expect("catalogue serializes")
        );
        return EXIT_OK;
    }
    println!(
        "{:<45} {:<6} {:<28} {:<8} description",
        "metric", "kind", "labels", "unit"
    );
    for m in c.metrics() {
        let mut desc = m.description.clone();
        if !m.documented {
            desc.push_str(" (undocumented)");
        }
        println!(
            "{:<45} {:<6} {:<28} {:<8} {}",
            m.name,
            m.component.as_str(),
            m.labels.join(","),
            m.unit.as_deref().unwrap_or("-"),
            desc
        );
    }
    EXIT_OK
}

/// The finished months of a month layout merged into their files, as `vscope-etl compact` does
/// by default (months that end before the watermark minus `scope.lateness`).
async fn compact_finished_months(pipeline: &config::Pipeline) -> Result<CompactReport, Error> {
    let opts = CompactOptions {
        table: None,
        until_ms: None,
        target_bytes: DEFAULT_TARGET_BYTES,
    };
    vscope_etl::maintenance::compact(pipeline, &opts).await
}

/// `vscope-etl compact`: exit 0 with what was merged; 2 for a bad flag; 1 when the lease is held
/// or the sink fails.
async fn compact(args: CompactArgs) -> u8 {
    let (pipeline, now) = match pipeline_and_clock(&args.pipeline, None) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let target_bytes = match config::flag_byte_size("--target-size", &args.target_size) {
        Ok(b) => b as u64,
        Err(e) => return report(&e.into()),
    };
    // A plain date is that day's start.
    let until = args.until.map(|u| {
        if u.len() == 10 && u.as_bytes()[4] == b'-' && u.as_bytes()[7] == b'-' {
            format!("{u}T00:00:00Z")
        } else {
            u
        }
    });
    let until_ms = match until
        .as_deref()
        .map(|u| config::export_time("--until", u, now))
    {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => return report(&e.into()),
    };
    let opts = CompactOptions {
        table: args.table,
        until_ms,
        target_bytes,
    };
    match vscope_etl::maintenance::compact(&pipeline, &opts).await {
        Err(e) => report(&e),
        Ok(r) if args.json => {
            println!("{}", serde_json::to_string(&r).unwrap_or_default());
            EXIT_OK
        }
        Ok(r) => {
            println!(
                "compacted {} partition period(s): {} file(s) into {}, {} rows, {:.1} s",
                r.periods.len(),
                r.files_before,
                r.files_after,
                r.rows,
                r.seconds
            );
            for (period, why) in &r.skipped {
                println!("skipped {period}: {why}");
            }
            EXIT_OK
        }
    }
}

/// `vscope-etl vacuum`: exit 0 with what was deleted (or would be, `--dry-run`); 2 for a pipeline
/// whose tables are not Delta tables or a bad `--retain`; 1 when the lease is held or the sink
/// fails.
async fn vacuum(args: VacuumArgs) -> u8 {
    let (pipeline, now) = match pipeline_and_clock(&args.pipeline, None) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let retain_ms = match config::flag_duration_ms("--retain", &args.retain) {
        Ok(r) => r,
        Err(e) => return report(&e.into()),
    };
    match vscope_etl::maintenance::vacuum(&pipeline, retain_ms, now, args.dry_run).await {
        Err(e) => report(&e),
        Ok(reports) if args.json => {
            println!("{}", serde_json::json!({ "tables": reports }));
            EXIT_OK
        }
        Ok(reports) => {
            let verb = if args.dry_run {
                "would delete"
            } else {
                "deleted"
            };
            for r in &reports {
                println!(
                    "{}: version {}, {} file(s) listed; {verb} {} unreferenced file(s) ({} bytes); \
                     kept {} younger than --retain",
                    r.table,
                    r.version,
                    r.referenced,
                    r.deleted.len(),
                    r.deleted_bytes,
                    r.kept_recent
                );
            }
            EXIT_OK
        }
    }
}

/// `vscope-etl status`: exit 0 with the report, whatever it shows (missing windows are the next
/// run's to fetch); 2 for a bad pipeline or range, 1 when the sink cannot be read.
async fn status(args: StatusArgs) -> u8 {
    let (pipeline, now) = match pipeline_and_clock(&args.pipeline, args.now.as_deref()) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let shown = vscope_etl::status::status(
        &pipeline,
        args.start.as_deref(),
        args.end.as_deref(),
        args.shards,
        now,
    )
    .await;
    match shown {
        Err(e) => report(&e),
        Ok(r) if args.json => {
            println!(
                "{}",
                serde_json::to_string(&r).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
            );
            0
        }
        Ok(r) => {
            print!("{r}");
            0
        }
    }
}

async fn inventory(args: InventoryArgs) -> u8 {
    let pipeline = match config::load(&args.pipeline) {
        Ok(p) => p,
        Err(e) => return report(&e.into()),
    };
    let now = match parse_now(args.now.as_deref()) {
        Ok(n) => n,
        Err(code) => return code,
    };
    match vscope_etl::commands::inventory_command(&pipeline, now).await {
        Err(e) => report(&e),
        Ok(r) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string(&r).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
                );
            } else {
                println!(
                    "{}: snapshot {} of {}: {} datacenters, {} filers, {} hosts, {} VMs ({} API requests)",
                    pipeline.name,
                    r.snapshot,
                    r.service_name,
                    r.datacenters,
                    r.filers,
                    r.hosts,
                    r.vms,
                    r.requests
                );
                for f in &r.files {
                    println!("  {} ({} rows, {} bytes)", f.path, f.rows, f.bytes);
                }
            }
            EXIT_OK
        }
    }
}

async fn token(args: TokenArgs) -> u8 {
    let pipeline = match config::load(&args.pipeline) {
        Ok(p) => p,
        Err(e) => return report(&e.into()),
    };
    match vscope_etl::commands::token_command(&pipeline).await {
        Err(e) => report(&e),
        Ok((user_id, t)) => {
            if args.export {
                print!("{}", vscope_etl::ovh::export_lines(&t));
                if std::io::stdout().is_terminal() {
                    eprintln!(
                        "note: the token above is a secret; prefer eval \"$(vscope-etl token {} --export)\"",
                        args.pipeline.display()
                    );
                }
            } else {
                println!("user_id            {user_id}");
                println!("opentsdb_endpoint  {}", t.opentsdb_endpoint);
                println!("warp_endpoint      {}", t.warp_endpoint);
                println!(
                    "token              *** (hidden; --export prints it as shell export lines)"
                );
            }
            EXIT_OK
        }
    }
}

async fn sim(args: SimArgs) -> u8 {
    if let Some(dir) = args.replay {
        let link = match &args.link_rate {
            None => None,
            Some(rate) => {
                let bits = match vscope_etl::sim::link::parse_rate(rate) {
                    Ok(b) => b,
                    Err(e) => {
                        eprintln!("error: --link-rate {e}");
                        return EXIT_CONFIG;
                    }
                };
                let rtt_ms = match config::flag_duration_ms("--link-rtt", &args.link_rtt) {
                    Ok(ms) => ms,
                    Err(e) => return report(&e.into()),
                };
                Some(vscope_etl::sim::link::Link::new(
                    bits,
                    std::time::Duration::from_millis(rtt_ms.max(0) as u64),
                ))
            }
        };

        let options = vscope_etl::sim::ReplayOptions {
            gzip: !args.no_gzip,
            gzip_level: args.gzip_level,
            precompress: args.precompress,
            token_rate: args.token_rate,
            link,
        };
        return sim_replay(dir, options, args.listen).await;
    }
    let defaults = SimConfig::default();
    let mut ovh_access_rules = Vec::new();
    for r in &args.ovh_rules {
        match vscope_etl::sim::parse_access_rule(r) {
            Ok(rule) => ovh_access_rules.push(rule),
            Err(e) => {
                eprintln!("error: --ovh-rule: {e}");
                return EXIT_CONFIG;
            }
        }
    }
    if args.ovh_rules.is_empty() {
        ovh_access_rules = defaults.ovh_access_rules.clone();
    }
    let config = SimConfig {
        ovh_application_key: args
            .ovh_application_key
            .unwrap_or_else(|| defaults.ovh_application_key.clone()),
        ovh_application_secret: args
            .ovh_application_secret
            .unwrap_or_else(|| defaults.ovh_application_secret.clone()),
        ovh_consumer_key: args
            .ovh_consumer_key
            .unwrap_or_else(|| defaults.ovh_consumer_key.clone()),
        ovh_access_rules,
        inventory_drift: args.inventory_drift,
        faults: args.faults,
        fault_seed: args.fault_seed,
        errors: args.errors,
        max_fetch_points: args.max_fetch_points,
        fetch_start: args.fetch_start,
        gzip: !args.no_gzip,
        dialect: args.dialect,
        token: args.token,
        datacenters: args.datacenters,
        hosts_per_datacenter: args.hosts,
        vms_per_datacenter: args.vms,
        filers_per_datacenter: args.filers,
        step_secs: args.step,
        seed: args.seed,
        ..SimConfig::default()
    };
    let Some((listener, addr)) = bind_announced(args.listen).await else {
        return EXIT_CONFIG;
    };
    eprintln!(
        "vScope simulator ({} dialect) listening on http://{addr}; Ctrl-C to stop",
        args.dialect
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match vscope_etl::sim::serve_until(config, listener, shutdown).await {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("error: simulator failed: {e}");
            1
        }
    }
}

/// `report`: open the dataset (local, or the period's objects of an S3 sink), build the report
/// off the async threads (polars queries block), write the formats.
#[cfg(feature = "report")]
async fn report_command(args: vscope_etl::cli::ReportArgs) -> u8 {
    use vscope_etl::report::{self, Format, ReportOptions};
    let fail = |code: u8, msg: String| {
        eprintln!("error: {msg}");
        code
    };
    let (url, s3) = match (&args.data, &args.pipeline) {
        (Some(d), p) => {
            let s3 = match p {
                Some(p) => match config::load(p) {
                    Ok(p) => p.sink.s3,
                    Err(e) => return report(&e.into()),
                },
                None => Default::default(),
            };
            (d.clone(), s3)
        }
        (None, Some(p)) => match config::load(p) {
            Ok(p) => (p.sink.url, p.sink.s3),
            Err(e) => return report(&e.into()),
        },
        (None, None) => {
            return fail(
                EXIT_CONFIG,
                "report needs --data URL or --pipeline FILE".into(),
            );
        }
    };
    let now = chrono::Utc::now().timestamp_millis();
    let time = |flag: &str, v: &Option<String>| -> Result<Option<i64>, String> {
        v.as_deref()
            .map(|s| {
                vscope_etl::semantics::time::parse_export_time(s, now)
                    .map_err(|e| format!("{flag}: {e}"))
            })
            .transpose()
    };
    let (from_ms, to_ms) = match (time("--from", &args.from), time("--to", &args.to)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => return fail(EXIT_CONFIG, e),
    };
    let mut formats = Vec::new();
    for f in &args.formats {
        match Format::parse_list(f) {
            Ok(v) => formats.extend(v),
            Err(e) => return fail(EXIT_CONFIG, format!("--format: {e}")),
        }
    }
    if formats.is_empty() {
        formats = vec![Format::Html, Format::Csv, Format::Json];
    }
    formats.sort();
    formats.dedup();
    let capacity_kb = match args
        .capacity
        .as_deref()
        .map(report::parse_capacity)
        .transpose()
    {
        Ok(c) => c,
        Err(e) => return fail(EXIT_CONFIG, e.to_string()),
    };
    let opts = ReportOptions {
        from_ms,
        to_ms,
        threshold: args.threshold,
        over_cpu: args.over_cpu,
        over_ram: args.over_ram,
        ready_ms: args.ready_ms,
        capacity_kb,
        raw_only: args.raw,
        usable_cpu: args.usable_cpu,
        usable_ram: args.usable_ram,
        usable_datastore: args.usable_datastore,
        rightsize_on: match report::Basis::parse(&args.rightsize_on) {
            Ok(b) => b,
            Err(e) => return fail(EXIT_CONFIG, e.to_string()),
        },
        idle_cpu: args.idle_cpu,
        idle_net: args.idle_net,
    };
    let ds = match report::open(&url, &s3, &opts).await {
        Ok(d) => d,
        Err(e) => return fail(EXIT_FAILED_UNITS, e.to_string()),
    };
    let explain = args.explain;
    let built = tokio::task::spawn_blocking(move || {
        let mut plans = Vec::new();
        let r = report::sections::build(&ds, &opts, &mut plans);
        drop(ds);
        (r, plans)
    })
    .await;
    let (built, plans) = match built {
        Ok(x) => x,
        Err(e) => return fail(EXIT_FAILED_UNITS, format!("report task: {e}")),
    };
    if explain {
        for p in &plans {
            eprintln!("{p}\n");
        }
    }
    let r = match built {
        Ok(r) => r,
        Err(e) => return fail(EXIT_FAILED_UNITS, e.to_string()),
    };
    match report::write(&r, &args.out, &formats) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            EXIT_OK
        }
        Err(e) => fail(EXIT_FAILED_UNITS, e.to_string()),
    }
}

/// Binds a server socket and prints its URL as the first line on stdout, so scripts and tests
/// can read the chosen port; `None` (after saying why) when the address cannot be bound.
async fn bind_announced(listen: std::net::SocketAddr) -> Option<(tokio::net::TcpListener, String)> {
    match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => {
            let addr = listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            println!("http://{addr}");
            Some((listener, addr))
        }
        Err(e) => {
            eprintln!("error: cannot listen on {listen}: {e}");
            None
        }
    }
}
