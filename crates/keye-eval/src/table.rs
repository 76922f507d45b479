//! Tables read the way pandas reads VLMEvalKit's files (`read_csv(sep='\t')`, `read_excel`).
//!
//! Cells are kept as strings, but every behaviour that changes what VLMEvalKit sees is mirrored:
//! the default NA tokens become missing cells, and numeric columns are re-rendered the way
//! `str()` prints the int or float pandas inferred (`1.50` → `1.5`, `2` → `2.0` when the column
//! also has a missing cell).

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use crate::error::EvalError;
use crate::python::{float_repr, parse_int};

/// pandas' default `na_values`.
const NA_TOKENS: [&str; 19] = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
];

pub fn is_na_token(cell: &str) -> bool {
    NA_TOKENS.contains(&cell)
}

/// A rectangular table of optional string cells with named columns.
#[derive(Debug, Clone, Default)]
pub struct Table {
    columns: Vec<String>,
    column_index: HashMap<String, usize>,
    rows: Vec<Vec<Option<String>>>,
}

impl Table {
    pub fn new(columns: Vec<String>) -> Self {
        let column_index = columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.clone(), i))
            .collect();
        Self {
            columns,
            column_index,
            rows: Vec::new(),
        }
    }

    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn column(&self, name: &str) -> Option<usize> {
        self.column_index.get(name).copied()
    }

    pub fn has_column(&self, name: &str) -> bool {
        self.column_index.contains_key(name)
    }

    /// The cell of `row` in column `name`; `None` when the column is absent or the cell missing.
    pub fn get(&self, row: usize, name: &str) -> Option<&str> {
        let column = self.column(name)?;
        self.rows.get(row)?.get(column)?.as_deref()
    }

    pub fn cell(&self, row: usize, column: usize) -> Option<&str> {
        self.rows.get(row)?.get(column)?.as_deref()
    }

    pub fn push_row(&mut self, mut row: Vec<Option<String>>) {
        row.resize(self.columns.len(), None);
        self.rows.push(row);
    }

    /// Adds a column (or replaces the values of an existing one).
    pub fn set_column(&mut self, name: &str, values: Vec<Option<String>>) {
        let column = match self.column(name) {
            Some(column) => column,
            None => {
                self.columns.push(name.to_string());
                self.column_index
                    .insert(name.to_string(), self.columns.len() - 1);
                for row in &mut self.rows {
                    row.push(None);
                }
                self.columns.len() - 1
            }
        };
        for (row, value) in self.rows.iter_mut().zip(values) {
            row[column] = value;
        }
    }

    /// Keeps only the rows for which `keep(row)` is true.
    pub fn retain_rows(&mut self, mut keep: impl FnMut(&[Option<String>]) -> bool) {
        self.rows.retain(|row| keep(row));
    }

    pub fn rows(&self) -> impl Iterator<Item = &[Option<String>]> {
        self.rows.iter().map(Vec::as_slice)
    }

    /// pandas' per-column type inference, rendered back to `str()` form. `skip` names columns
    /// that are never numeric in practice (base64 images) and would only cost time.
    pub fn normalise_numeric_columns(&mut self, skip: &[&str]) {
        for column in 0..self.columns.len() {
            if skip.contains(&self.columns[column].as_str()) {
                continue;
            }
            let kind = infer_column(self.rows.iter().map(|row| row[column].as_deref()));
            match kind {
                ColumnKind::Text => {}
                ColumnKind::Int => {
                    for row in &mut self.rows {
                        if let Some(cell) = &mut row[column] {
                            let value = parse_pandas_int(cell).expect("checked by inference");
                            *cell = value.to_string();
                        }
                    }
                }
                ColumnKind::Float => {
                    for row in &mut self.rows {
                        if let Some(cell) = &mut row[column] {
                            let value = parse_pandas_float(cell).expect("checked by inference");
                            *cell = float_repr(value);
                        }
                    }
                }
            }
        }
    }
}

#[derive(Debug, PartialEq)]
enum ColumnKind {
    Text,
    Int,
    Float,
}

fn infer_column<'a>(cells: impl Iterator<Item = Option<&'a str>>) -> ColumnKind {
    let mut any_missing = false;
    let mut all_int = true;
    let mut any_value = false;
    for cell in cells {
        let Some(cell) = cell else {
            any_missing = true;
            continue;
        };
        any_value = true;
        if all_int && parse_pandas_int(cell).is_some() {
            continue;
        }
        all_int = false;
        if parse_pandas_float(cell).is_none() {
            return ColumnKind::Text;
        }
    }
    match (any_value, all_int, any_missing) {
        // An all-missing column is float NaN in pandas; nothing to render.
        (false, _, _) => ColumnKind::Text,
        (true, true, false) => ColumnKind::Int,
        _ => ColumnKind::Float,
    }
}

/// The pandas C parser's integers: optional sign, ASCII digits, within int64, surrounding
/// spaces ignored.
fn parse_pandas_int(cell: &str) -> Option<i64> {
    let cell = cell.trim_matches(' ');
    let digits = cell.strip_prefix(['+', '-']).unwrap_or(cell);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    parse_int(cell).and_then(|v| i64::try_from(v).ok())
}

/// The pandas C parser's floats: decimal or scientific notation, or an `inf` spelling,
/// surrounding spaces ignored.
fn parse_pandas_float(cell: &str) -> Option<f64> {
    let cell = cell.trim_matches(' ');
    let unsigned = cell.strip_prefix(['+', '-']).unwrap_or(cell);
    let lower = unsigned.to_ascii_lowercase();
    if lower == "inf" || lower == "infinity" {
        return cell.to_ascii_lowercase().parse().ok();
    }
    let well_formed = !unsigned.is_empty()
        && unsigned
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
        && unsigned
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_digit() || b == b'.');
    if !well_formed {
        return None;
    }
    cell.parse().ok()
}

/// Reads a delimited text file with pandas' defaults: header row, `"` quoting with `""`
/// escapes, blank lines skipped, short rows padded with missing cells, NA tokens as missing.
pub fn read_delimited(path: &Path, delimiter: u8) -> Result<Table, EvalError> {
    let file = std::fs::File::open(path).map_err(|source| EvalError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    read_delimited_from(file, delimiter, path)
}

pub fn read_delimited_from(
    reader: impl Read,
    delimiter: u8,
    path: &Path,
) -> Result<Table, EvalError> {
    let mut csv_reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(reader);
    let malformed = |line: u64, reason: String| EvalError::MalformedTable {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let mut records = csv_reader.records();
    let header = match records.next() {
        Some(record) => record.map_err(|e| malformed(csv_line(&e), e.to_string()))?,
        None => return Err(malformed(1, "the file is empty (no header row)".into())),
    };
    let columns = dedupe_column_names(header.iter().map(str::to_string).collect());
    let width = columns.len();
    let mut table = Table::new(columns);
    for record in records {
        let record = record.map_err(|e| malformed(csv_line(&e), e.to_string()))?;
        if record.len() == 1 && record.get(0) == Some("") {
            continue;
        }
        if record.len() > width {
            let line = record.position().map_or(0, |p| p.line());
            return Err(malformed(
                line,
                format!("{} fields where the header has {width}", record.len()),
            ));
        }
        let row = record
            .iter()
            .map(|cell| (!is_na_token(cell)).then(|| cell.to_string()))
            .collect();
        table.push_row(row);
    }
    Ok(table)
}

fn csv_line(error: &csv::Error) -> u64 {
    error.position().map_or(0, |p| p.line())
}

/// pandas renames duplicate headers `x`, `x.1`, `x.2`…
fn dedupe_column_names(names: Vec<String>) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    names
        .into_iter()
        .map(|name| {
            let count = seen.entry(name.clone()).or_insert(0);
            let renamed = if *count == 0 {
                name.clone()
            } else {
                format!("{name}.{count}")
            };
            *count += 1;
            renamed
        })
        .collect()
}

/// Reads the first sheet of an `.xlsx` file (VLMEvalKit's prediction format) like
/// `pandas.read_excel`: the first row is the header, empty cells and NA strings are missing.
pub fn read_xlsx(path: &Path) -> Result<Table, EvalError> {
    use calamine::{Reader, Xlsx, open_workbook};
    let malformed = |reason: String| EvalError::MalformedTable {
        path: path.to_path_buf(),
        line: 0,
        reason,
    };
    let mut workbook: Xlsx<_> =
        open_workbook(path).map_err(|e: calamine::XlsxError| malformed(e.to_string()))?;
    let range = workbook
        .worksheet_range_at(0)
        .ok_or_else(|| malformed("the workbook has no sheet".into()))?
        .map_err(|e| malformed(e.to_string()))?;
    let mut rows = range.rows();
    let header = rows
        .next()
        .ok_or_else(|| malformed("the first sheet is empty".into()))?;
    let columns = dedupe_column_names(
        header
            .iter()
            .map(|cell| xlsx_cell_text(cell).unwrap_or_default())
            .collect(),
    );
    let mut table = Table::new(columns);
    for row in rows {
        table.push_row(row.iter().map(xlsx_cell_text).collect());
    }
    Ok(table)
}

fn xlsx_cell_text(cell: &calamine::Data) -> Option<String> {
    use calamine::Data;
    let text = match cell {
        Data::Empty | Data::Error(_) => return None,
        Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
        Data::Int(i) => i.to_string(),
        // Excel stores every number as a double; integral ones were integers in pandas.
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{f:.0}"),
        Data::Float(f) => float_repr(*f),
        Data::Bool(b) => if *b { "True" } else { "False" }.to_string(),
        Data::DateTime(d) => float_repr(d.as_f64()),
    };
    (!is_na_token(&text)).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Table {
        read_delimited_from(text.as_bytes(), b'\t', Path::new("test.tsv")).unwrap()
    }

    #[test]
    fn na_tokens_and_quotes() {
        let table =
            parse("index\tA\tB\thint\n1\tNone\t\"x\ty\"\tN/A\n2\tNA\t\"say \"\"hi\"\"\"\tok\n");
        assert_eq!(table.get(0, "A"), None);
        assert_eq!(table.get(0, "B"), Some("x\ty"));
        assert_eq!(table.get(0, "hint"), None);
        assert_eq!(table.get(1, "B"), Some("say \"hi\""));
    }

    #[test]
    fn numeric_columns_render_like_pandas() {
        let mut table = parse("index\tanswer\tcount\tmixed\n1\t1.50\t2\tx\n2\t3\t\t4\n");
        table.normalise_numeric_columns(&[]);
        assert_eq!(table.get(0, "answer"), Some("1.5"));
        assert_eq!(table.get(1, "answer"), Some("3.0"));
        assert_eq!(table.get(0, "count"), Some("2.0"));
        assert_eq!(table.get(1, "count"), None);
        assert_eq!(table.get(1, "mixed"), Some("4"));
        assert_eq!(table.get(0, "index"), Some("1"));
    }

    /// Expectations printed by pandas 3.1.1 `read_csv(sep='\t')` then `str()` per cell.
    #[test]
    fn numeric_inference_matches_pandas() {
        let text = "index\tanswer\tA\tB\tC\tD\tE\n001\t1.50\t1e5\t+3\tinf\t 5\t1,000\n\
                    2\t2\t-0\t4\t-inf\t6\tNone\n3\t\t7.\t5\t1\t7 \tx\n";
        let mut table = parse(text);
        table.normalise_numeric_columns(&[]);
        let column = |name: &str| {
            (0..3)
                .map(|r| table.get(r, name).unwrap_or("nan").to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(column("index"), ["1", "2", "3"]);
        assert_eq!(column("answer"), ["1.5", "2.0", "nan"]);
        assert_eq!(column("A"), ["100000.0", "-0.0", "7.0"]);
        assert_eq!(column("B"), ["3", "4", "5"]);
        assert_eq!(column("C"), ["inf", "-inf", "1.0"]);
        assert_eq!(column("D"), ["5", "6", "7"]);
        assert_eq!(column("E"), ["1,000", "nan", "x"]);
    }

    #[test]
    fn short_rows_padded_long_rows_rejected() {
        let table = parse("a\tb\tc\n1\t2\n\n3\t4\t5\n");
        assert_eq!(table.len(), 2);
        assert_eq!(table.get(0, "c"), None);
        let error = read_delimited_from("a\tb\n1\t2\t3\n".as_bytes(), b'\t', Path::new("x.tsv"))
            .unwrap_err();
        assert!(error.to_string().contains("3 fields"), "{error}");
    }

    #[test]
    fn duplicate_headers_are_renamed() {
        let table = parse("a\ta\tb\n1\t2\t3\n");
        assert_eq!(table.columns(), ["a", "a.1", "b"]);
    }
}
