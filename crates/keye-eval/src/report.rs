//! `keye eval report`: every scored dataset of a work dir in one self-contained HTML page (tables
//! and SVG bar charts, no external assets), plus JSON and CSV.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::error::EvalError;
use crate::output::{Summary, read_summaries, summary_table};
use crate::score::{Cell, ScoreTable};

/// The summaries of every model folder under a work dir (or of the named models only).
pub fn collect(
    work_dir: &Path,
    models: &[String],
) -> Result<BTreeMap<String, Vec<Summary>>, EvalError> {
    let entries = std::fs::read_dir(work_dir).map_err(EvalError::io(work_dir))?;
    let mut by_model = BTreeMap::new();
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let model = entry.file_name().to_string_lossy().into_owned();
        if !models.is_empty() && !models.contains(&model) {
            continue;
        }
        let summaries = read_summaries(&path)?;
        if !summaries.is_empty() {
            by_model.insert(model, summaries);
        }
    }
    Ok(by_model)
}

/// Files written by [`write_report`].
#[derive(Debug, Clone)]
pub struct ReportFiles {
    pub html: PathBuf,
    pub json: PathBuf,
    pub csv: PathBuf,
}

pub fn write_report(
    by_model: &BTreeMap<String, Vec<Summary>>,
    output_dir: &Path,
) -> Result<ReportFiles, EvalError> {
    std::fs::create_dir_all(output_dir).map_err(EvalError::io(output_dir))?;
    let files = ReportFiles {
        html: output_dir.join("report.html"),
        json: output_dir.join("report.json"),
        csv: output_dir.join("report.csv"),
    };
    std::fs::write(&files.html, html(by_model)).map_err(EvalError::io(&files.html))?;
    let json_text = serde_json::to_string_pretty(&json_report(by_model)).expect("JSON serialises");
    std::fs::write(&files.json, json_text).map_err(EvalError::io(&files.json))?;
    std::fs::write(&files.csv, csv(by_model)).map_err(EvalError::io(&files.csv))?;
    Ok(files)
}

/// The one number a dataset is quoted by.
pub fn main_metric(summary: &Summary) -> Option<(&str, f64)> {
    const PREFERRED: [&str; 10] = [
        "Overall",
        "Overall (dev)",
        "Overall (validation)",
        "MME",
        "aAcc",
        "F1",
        "Final Score",
        "Overall acc",
        "overall",
        "Avg ACC",
    ];
    PREFERRED
        .iter()
        .find_map(|key| summary.headline.get_key_value(*key))
        .or_else(|| summary.headline.iter().next())
        .map(|(k, v)| (k.as_str(), *v))
}

fn json_report(by_model: &BTreeMap<String, Vec<Summary>>) -> Value {
    let mut models = serde_json::Map::new();
    for (model, summaries) in by_model {
        let mut datasets = serde_json::Map::new();
        for s in summaries {
            datasets.insert(
                s.dataset.clone(),
                json!({
                    "headline": s.headline,
                    "rows": s.rows,
                    "scored": s.scored,
                    "failed": s.failed,
                    "random_fallbacks": s.random_fallbacks,
                    "dataset_md5": s.dataset_md5,
                    "dataset_md5_matches": s.dataset_md5_matches,
                    "model_id": s.settings.model,
                    "think": s.settings.think,
                    "prompt_style": s.settings.prompt_style,
                    "judge": s.settings.judge,
                    "compat": s.settings.compat,
                    "image_encoding": s.settings.image_encoding,
                    "max_tokens": s.settings.max_tokens,
                    "keye_version": s.keye_version,
                }),
            );
        }
        models.insert(model.clone(), Value::Object(datasets));
    }
    json!({ "models": models })
}

fn csv(by_model: &BTreeMap<String, Vec<Summary>>) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let mut out = String::from(
        "\"model\",\"dataset\",\"metric\",\"value\",\"failed\",\"dataset_md5_matches\"\n",
    );
    for (model, summaries) in by_model {
        for s in summaries {
            let md5 = s
                .dataset_md5_matches
                .map_or("unknown".to_string(), |m| m.to_string());
            for (metric, value) in &s.headline {
                let _ = writeln!(
                    out,
                    "{},{},{},{},{},{}",
                    quote(model),
                    quote(&s.dataset),
                    quote(metric),
                    quote(&crate::python::float_repr(*value)),
                    quote(&s.failed.to_string()),
                    quote(&md5)
                );
            }
        }
    }
    out
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn number(value: f64) -> String {
    if value.is_nan() {
        "–".into()
    } else {
        format!("{value:.2}")
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:1200px}\
table{border-collapse:collapse;margin:0.5rem 0 1.5rem}th,td{border:1px solid #ccc;padding:0.25rem 0.6rem;text-align:right}\
th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}.warn{color:#a40}.meta{color:#666;font-size:0.9em}\
svg text{font-size:12px;font-family:system-ui,sans-serif}h2{margin-top:2.5rem;border-bottom:1px solid #ddd}";

fn html(by_model: &BTreeMap<String, Vec<Summary>>) -> String {
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>keye eval report</title><style>{STYLE}</style></head><body>"
    );
    page.push_str("<h1>keye eval report</h1>");
    let mut datasets: Vec<&str> = by_model
        .values()
        .flatten()
        .map(|s| s.dataset.as_str())
        .collect();
    datasets.sort();
    datasets.dedup();
    page.push_str("<h2>Overview</h2><table><tr><th>dataset</th>");
    for model in by_model.keys() {
        let _ = write!(page, "<th>{}</th>", escape(model));
    }
    page.push_str("</tr>");
    for dataset in &datasets {
        let _ = write!(page, "<tr><td>{}</td>", escape(dataset));
        for summaries in by_model.values() {
            let cell = summaries
                .iter()
                .find(|s| s.dataset == *dataset)
                .and_then(main_metric)
                .map_or("–".to_string(), |(metric, value)| {
                    format!(
                        "{} <span class=\"meta\">{}</span>",
                        number(value),
                        escape(metric)
                    )
                });
            let _ = write!(page, "<td>{cell}</td>");
        }
        page.push_str("</tr>");
    }
    page.push_str("</table>");
    for (model, summaries) in by_model {
        let _ = write!(page, "<h2>{}</h2>", escape(model));
        for summary in summaries {
            dataset_section(&mut page, summary);
        }
    }
    page.push_str("</body></html>\n");
    page
}

fn dataset_section(page: &mut String, s: &Summary) {
    let _ = write!(page, "<h3>{}</h3><p class=\"meta\">", escape(&s.dataset));
    let _ = write!(
        page,
        "{} rows, {} scored, {} failed, {} random judge fallbacks · judge {} · compat {} · prompts {} · think {} · images {} · max tokens {}",
        s.rows,
        s.scored,
        s.failed,
        s.random_fallbacks,
        escape(&s.settings.judge),
        escape(&s.settings.compat),
        escape(&s.settings.prompt_style),
        escape(&s.settings.think),
        escape(&s.settings.image_encoding),
        s.settings.max_tokens
    );
    page.push_str("<br>MD5 ");
    page.push_str(&escape(&s.dataset_md5));
    match s.dataset_md5_matches {
        Some(true) => page.push_str(" (matches VLMEvalKit's file)"),
        Some(false) => page.push_str(
            " <span class=\"warn\">(differs from VLMEvalKit's file: not comparable)</span>",
        ),
        None => page.push_str(" (no pinned MD5)"),
    }
    page.push_str("</p>");
    page.push_str("<table>");
    for (metric, value) in &s.headline {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td></tr>",
            escape(metric),
            number(*value)
        );
    }
    page.push_str("</table>");
    match summary_table(s) {
        Some(table) => {
            table_html(page, &table);
            for row in &table.rows {
                bar_chart(page, &table, row);
            }
        }
        None => {
            let _ = write!(
                page,
                "<pre>{}</pre>",
                escape(&serde_json::to_string_pretty(&s.scores).unwrap_or_default())
            );
        }
    }
}

fn table_html(page: &mut String, table: &ScoreTable) {
    page.push_str("<table><tr>");
    for column in &table.columns {
        let _ = write!(page, "<th>{}</th>", escape(column));
    }
    page.push_str("</tr>");
    for row in &table.rows {
        page.push_str("<tr>");
        for cell in row {
            let text = match cell {
                Cell::Text(t) => escape(t),
                Cell::Number(n) => number(*n),
            };
            let _ = write!(page, "<td>{text}</td>");
        }
        page.push_str("</tr>");
    }
    page.push_str("</table>");
}

/// Horizontal bars for the numeric cells of one table row.
fn bar_chart(page: &mut String, table: &ScoreTable, row: &[Cell]) {
    let bars: Vec<(&str, f64)> = table
        .columns
        .iter()
        .zip(row)
        .filter_map(|(column, cell)| {
            cell.as_number()
                .filter(|v| v.is_finite())
                .map(|v| (column.as_str(), v))
        })
        .collect();
    if bars.len() < 2 {
        return;
    }
    let largest = bars.iter().map(|(_, v)| *v).fold(0.0, f64::max);
    let scale = if largest <= 1.0 {
        1.0
    } else if largest <= 100.0 {
        100.0
    } else {
        largest
    };
    let title = match row.first() {
        Some(Cell::Text(label)) => label.as_str(),
        _ => "",
    };
    let (label_width, bar_width, line) = (220.0, 420.0, 20.0);
    let height = line * bars.len() as f64 + 24.0;
    let _ = write!(
        page,
        "<svg width=\"{}\" height=\"{height}\" role=\"img\" aria-label=\"{}\"><text x=\"0\" y=\"14\">{}</text>",
        label_width + bar_width + 70.0,
        escape(title),
        escape(title)
    );
    for (i, (name, value)) in bars.iter().enumerate() {
        let y = 22.0 + i as f64 * line;
        let width = (value / scale).clamp(0.0, 1.0) * bar_width;
        let _ = write!(
            page,
            "<text x=\"0\" y=\"{}\">{}</text><rect x=\"{label_width}\" y=\"{y}\" width=\"{width:.1}\" height=\"{}\" fill=\"#4a7fb5\"></rect><text x=\"{}\" y=\"{}\">{}</text>",
            y + 13.0,
            escape(name),
            line - 5.0,
            label_width + width + 4.0,
            y + 13.0,
            number(*value)
        );
    }
    page.push_str("</svg>");
}
