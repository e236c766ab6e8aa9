//! `haskap import`: a municipal standard open dataset (CSV) into an NGSI-LD broker.
//!
//! Exit status: 0 when every row was imported, 1 when some rows were rejected (the good ones are
//! imported unless `--strict`), 2 when the file could not be read or the broker refused.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use haskap_city::broker::Broker;
use haskap_city::import::{DatasetKind, Finding, Report};

/// Arguments of `haskap import`.
#[derive(clap::Args)]
pub(crate) struct ImportArgs {
    /// The CSV file (UTF-8 with or without BOM, or Shift_JIS; old or new headers).
    file: PathBuf,
    /// The dataset, when the header row does not tell: evacuation_space, aed, public_facility,
    /// preschool, public_toilet (or the Japanese dataset name).
    #[arg(long)]
    dataset: Option<DatasetKind>,
    /// Base URL of the NGSI-LD broker.
    #[arg(long, env = "HASKAP_BROKER", default_value = "http://127.0.0.1:1026")]
    broker: String,
    /// The tenant to write to (default: the default tenant).
    #[arg(long)]
    tenant: Option<String>,
    /// Import nothing unless every row is good.
    #[arg(long)]
    strict: bool,
    /// Read and check the file, write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Write the report (rows, rejections with line/column/reason, repairs, counts) as JSON here.
    #[arg(long, value_name = "FILE.json")]
    report: Option<PathBuf>,
}

/// Runs the import.
pub(crate) async fn run(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let prepared = match haskap_city::import::prepare(&bytes, args.dataset) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("haskap import: {}: {e}", args.file.display());
            return Ok(ExitCode::from(2));
        }
    };
    let mut report = prepared.report;
    let held_back = args.dry_run || (args.strict && !report.rejected.is_empty());
    let write = !held_back && !prepared.entities.is_empty();
    let mut failure = None;
    if write {
        let broker = Broker::new(&args.broker, args.tenant.as_deref(), haskap_model::builtin::CITY_CONTEXT_URL);
        let total = prepared.entities.len();
        let tty = std::io::stderr().is_terminal();
        let result = broker
            .sync(&prepared.entities, |done| {
                if tty {
                    let bar = "#".repeat(done * 30 / total.max(1));
                    eprint!("\r  [{bar:<30}] {done}/{total}");
                    let _ = std::io::stderr().flush();
                }
            })
            .await;
        if tty {
            eprintln!();
        }
        match result {
            Ok(counts) => report.written = Some(counts),
            Err(e) => failure = Some(e),
        }
    }
    print_summary(&args, &report, write);
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("writing the report to {}", path.display()))?;
    }
    if let Some(e) = failure {
        eprintln!("haskap import: {e}");
        return Ok(ExitCode::from(2));
    }
    Ok(if report.rejected.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn print_summary(args: &ImportArgs, r: &Report, wrote: bool) {
    println!(
        "{}: {} ({}, {:?} header, {}): {} rows, {} accepted, {} rejected, {} repaired",
        args.file.display(),
        r.dataset_name,
        r.entity_type,
        r.generation,
        r.encoding,
        r.rows,
        r.accepted,
        r.rejected.len(),
        r.repaired.len()
    );
    let line = |f: &Finding| {
        let col = f.column.as_deref().map(|c| format!(" {c}")).unwrap_or_default();
        let val = f.value.as_deref().map(|v| format!(" {v:?}")).unwrap_or_default();
        format!("line {}{col}{val}: {}", f.line, f.reason)
    };
    for f in &r.rejected {
        println!("  rejected {}", line(f));
    }
    for f in &r.repaired {
        println!("  repaired {}", line(f));
    }
    if !r.missing_columns.is_empty() {
        println!("  columns not in the file: {}", r.missing_columns.join(", "));
    }
    match &r.written {
        Some(w) => println!("  written: {} created, {} updated, {} unchanged", w.created, w.updated, w.unchanged),
        None if args.dry_run => println!("  dry run: nothing written"),
        None if args.strict && !r.rejected.is_empty() => println!("  --strict: nothing written"),
        None if !wrote => println!("  nothing to write"),
        None => {}
    }
}
