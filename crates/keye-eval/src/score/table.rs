use crate::python::float_repr;

/// One score-table cell.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum Cell {
    Text(String),
    Number(f64),
}

impl Cell {
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Cell::Number(n) => Some(*n),
            Cell::Text(_) => None,
        }
    }

    /// How pandas writes the cell to CSV: missing numbers are empty, floats in `repr` form.
    fn csv_text(&self) -> String {
        match self {
            Cell::Text(text) => text.clone(),
            Cell::Number(n) if n.is_nan() => String::new(),
            Cell::Number(n) => float_repr(*n),
        }
    }
}

/// A VLMEvalKit score table: named columns, rows of cells.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct ScoreTable {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

impl ScoreTable {
    /// A one-row table from ordered `(column, value)` pairs; a repeated column keeps its first
    /// position and takes the later value, as a Python dict does.
    pub fn single_row(pairs: Vec<(String, f64)>) -> ScoreTable {
        let mut table = ScoreTable::default();
        let mut row = Vec::new();
        for (column, value) in pairs {
            match table.columns.iter().position(|c| *c == column) {
                Some(existing) => row[existing] = Cell::Number(value),
                None => {
                    table.columns.push(column);
                    row.push(Cell::Number(value));
                }
            }
        }
        table.rows.push(row);
        table
    }

    /// The value in `column` of the row whose first cell is `row_label` (or of the only row).
    pub fn value(&self, row_label: Option<&str>, column: &str) -> Option<f64> {
        let column = self.columns.iter().position(|c| c == column)?;
        let row = match row_label {
            Some(label) => self
                .rows
                .iter()
                .find(|r| matches!(r.first(), Some(Cell::Text(t)) if t == label))?,
            None => self.rows.first()?,
        };
        row.get(column)?.as_number()
    }

    /// CSV with every field quoted (`quoting=csv.QUOTE_ALL`), no index column.
    pub fn to_csv(&self) -> String {
        let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        let mut out = String::new();
        out.push_str(
            &self
                .columns
                .iter()
                .map(|c| quote(c))
                .collect::<Vec<_>>()
                .join(","),
        );
        out.push('\n');
        for row in &self.rows {
            out.push_str(
                &row.iter()
                    .map(|c| quote(&c.csv_text()))
                    .collect::<Vec<_>>()
                    .join(","),
            );
            out.push('\n');
        }
        out
    }

    /// A plain-text rendering for the console, transposed when there are fewer rows than
    /// columns (as VLMEvalKit prints it).
    pub fn to_text(&self) -> String {
        let render = |cell: &Cell| match cell {
            Cell::Text(t) => t.clone(),
            Cell::Number(n) if n.is_nan() => "nan".into(),
            Cell::Number(n) => format!("{n:.2}"),
        };
        let lines: Vec<Vec<String>> = if self.rows.len() < self.columns.len() {
            self.columns
                .iter()
                .enumerate()
                .map(|(i, column)| {
                    std::iter::once(column.clone())
                        .chain(
                            self.rows
                                .iter()
                                .map(|r| r.get(i).map_or(String::new(), render)),
                        )
                        .collect()
                })
                .collect()
        } else {
            std::iter::once(self.columns.clone())
                .chain(self.rows.iter().map(|r| r.iter().map(render).collect()))
                .collect()
        };
        let widths: Vec<usize> = (0..lines.iter().map(Vec::len).max().unwrap_or(0))
            .map(|i| {
                lines
                    .iter()
                    .filter_map(|l| l.get(i))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        lines
            .iter()
            .map(|line| {
                line.iter()
                    .enumerate()
                    .map(|(i, s)| format!("{s:<width$}", width = widths[i]))
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_string()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}
