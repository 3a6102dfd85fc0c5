//! `--format` for the listing verbs (`images`, later `ps`): `json`, or the subset of Go templates
//! Docker users type — `{{.Field}}` (spaces inside the braces allowed), `{{json .}}` and
//! `{{json .Field}}`, a leading `table` for a header row and aligned columns, `\t` and `\n`
//! escapes. Rows are JSON objects, so one value feeds `json` and templates alike. A field the
//! row lacks is an error that lists the ones it has, not an empty column.

use anyhow::{bail, Result};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(String),
    /// `{{json .}}` (None) or `{{json .Field}}`.
    Json(Option<String>),
}

/// A parsed `--format` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    table: bool,
    parts: Vec<Part>,
}

impl Template {
    pub fn parse(spec: &str) -> Result<Template> {
        let (table, body) = match spec.strip_prefix("table") {
            Some(rest) if rest.is_empty() || rest.starts_with(char::is_whitespace) => (true, rest.trim_start()),
            _ => (false, spec),
        };
        let body = body.replace("\\t", "\t").replace("\\n", "\n");
        let mut parts = Vec::new();
        let mut rest = body.as_str();
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let Some(close) = rest[open..].find("}}") else {
                bail!("format `{spec}`: `{{{{` without `}}}}`");
            };
            let action = rest[open + 2..open + close].trim();
            parts.push(parse_action(spec, action)?);
            rest = &rest[open + close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { table, parts })
    }

    /// One row as text.
    pub fn render(&self, row: &Value) -> Result<String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Field(f) => out.push_str(&plain(field(row, f)?)),
                Part::Json(None) => out.push_str(&row.to_string()),
                Part::Json(Some(f)) => out.push_str(&field(row, f)?.to_string()),
            }
        }
        Ok(out)
    }

    /// The whole listing: a header row first for `table`, columns aligned on tabs.
    pub fn render_all(&self, rows: &[Value], header: impl Fn(&str) -> String) -> Result<String> {
        let mut lines = Vec::new();
        if self.table {
            let head: String = self
                .parts
                .iter()
                .map(|p| match p {
                    Part::Text(t) => t.clone(),
                    Part::Field(f) | Part::Json(Some(f)) => header(f),
                    Part::Json(None) => String::new(),
                })
                .collect();
            lines.push(head);
        }
        for r in rows {
            lines.push(self.render(r)?);
        }
        let text = lines.join("\n");
        Ok(if self.table { align(&text) } else { text })
    }
}

fn parse_action(spec: &str, action: &str) -> Result<Part> {
    let field_name = |s: &str| -> Result<String> {
        match s.strip_prefix('.') {
            Some(f) if !f.is_empty() && f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => Ok(f.to_string()),
            _ => bail!("format `{spec}`: `{{{{{action}}}}}` is not supported (use {{{{.Field}}}} or {{{{json .}}}})"),
        }
    };
    match action.split_whitespace().collect::<Vec<_>>().as_slice() {
        ["json", "."] => Ok(Part::Json(None)),
        ["json", f] => Ok(Part::Json(Some(field_name(f)?))),
        [f] => Ok(Part::Field(field_name(f)?)),
        _ => field_name("").map(Part::Field),
    }
}

fn field<'a>(row: &'a Value, name: &str) -> Result<&'a Value> {
    match row.get(name) {
        Some(v) => Ok(v),
        None => {
            let have: Vec<&str> = row.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
            bail!("format: no field `.{name}` (fields: {})", have.join(", "))
        }
    }
}

/// A value as Go's template prints it: strings bare, lists space-separated in brackets.
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<no value>".into(),
        Value::Array(a) => format!("[{}]", a.iter().map(plain).collect::<Vec<_>>().join(" ")),
        other => other.to_string(),
    }
}

/// Aligns tab-separated columns with three spaces between them, as Docker's tabwriter does.
pub fn align(text: &str) -> String {
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    for r in &rows {
        for (i, c) in r.iter().enumerate().take(r.len().saturating_sub(1)) {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    rows.iter()
        .map(|r| {
            let mut line = String::new();
            for (i, c) in r.iter().enumerate() {
                line.push_str(c);
                if i + 1 < r.len() {
                    line.push_str(&" ".repeat(widths[i] - c.chars().count() + 3));
                }
            }
            line.trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row() -> Value {
        json!({"Repository": "alpine", "Tag": "3", "ID": "abc", "Size": 5, "Names": ["a", "b"]})
    }

    #[test]
    fn fields_json_and_escapes() {
        let cases = [
            ("{{.Repository}}:{{.Tag}}", "alpine:3"),
            ("{{ .ID }}\\t{{.Size}}", "abc\t5"),
            ("{{json .Names}}", "[\"a\",\"b\"]"),
            ("{{.Names}}", "[a b]"),
            ("id={{.ID}}!", "id=abc!"),
            ("plain text", "plain text"),
        ];
        for (spec, want) in cases {
            assert_eq!(Template::parse(spec).unwrap().render(&row()).unwrap(), want, "{spec}");
        }
        let whole = Template::parse("{{json .}}").unwrap().render(&row()).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&whole).unwrap(), row());
    }

    #[test]
    fn table_has_a_header_and_aligned_columns() {
        let t = Template::parse("table {{.Repository}}\\t{{.ID}}").unwrap();
        let rows = [row(), json!({"Repository": "a-much-longer-name", "ID": "d"})];
        let out = t.render_all(&rows, |f| if f == "ID" { "IMAGE ID".into() } else { f.to_uppercase() }).unwrap();
        assert_eq!(
            out.lines().collect::<Vec<_>>(),
            ["REPOSITORY           IMAGE ID", "alpine               abc", "a-much-longer-name   d"]
        );
        // "tablefoo" is not the table keyword.
        assert!(!Template::parse("tablefoo").unwrap().table);
    }

    #[test]
    fn bad_templates_and_fields_are_errors() {
        for bad in ["{{.Repository", "{{range .Names}}", "{{.}}", "{{json}}", "{{.A.B}}"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
        let err = Template::parse("{{.Nope}}").unwrap().render(&row()).unwrap_err().to_string();
        assert!(err.contains("no field `.Nope`") && err.contains("Repository"), "{err}");
    }
}
