//! Human output: diagnostics drawn over the source with ariadne.

use std::collections::HashSet;

use ariadne::{Color, Config, IndexType, Label as AriadneLabel, Report, ReportKind};

use super::{Diagnostic, Severity};
use crate::source::SourceMap;

/// Renders diagnostics as text; `color` adds ANSI colours (only on a terminal).
pub fn render(sources: &SourceMap, diagnostics: &[Diagnostic], color: bool) -> String {
    let mut out = Vec::new();
    let name = |id: crate::source::FileId| sources.get(id).path.display().to_string();
    // Only the files the diagnostics point into are split into lines: a policy of a hundred
    // files with one warning must not copy and index them all. Files are taken by name, as
    // ariadne looks them up (of two files of the same name, the later one, as before).
    let shown: HashSet<String> = diagnostics
        .iter()
        .flat_map(|d| std::iter::once(d.primary.file).chain(d.labels.iter().map(|l| l.file)))
        .map(name)
        .collect();
    let cache: Vec<(String, String)> = sources
        .iter()
        .map(|(_, file)| (file.path.display().to_string(), file))
        .filter(|(path, _)| shown.contains(path))
        .map(|(path, file)| (path, file.text.to_string()))
        .collect();
    let mut cache = ariadne::sources(cache);
    for diagnostic in diagnostics {
        let (kind, accent) = match diagnostic.severity {
            Severity::Error => (ReportKind::Error, Color::Red),
            Severity::Warning => (ReportKind::Warning, Color::Yellow),
        };
        let primary = &diagnostic.primary;
        let mut report = Report::build(kind, (name(primary.file), primary.span.range()))
            .with_config(Config::default().with_color(color).with_index_type(IndexType::Byte))
            .with_code(diagnostic.code.as_str())
            .with_message(&diagnostic.message);
        let mut label = AriadneLabel::new((name(primary.file), primary.span.range())).with_color(accent).with_order(0);
        if let Some(message) = &primary.message {
            label = label.with_message(message);
        }
        report = report.with_label(label);
        for (order, extra) in diagnostic.labels.iter().enumerate() {
            let mut label = AriadneLabel::new((name(extra.file), extra.span.range()))
                .with_color(Color::Blue)
                .with_order(order as i32 + 1);
            if let Some(message) = &extra.message {
                label = label.with_message(message);
            }
            report = report.with_label(label);
        }
        for note in &diagnostic.notes {
            report = report.with_note(note);
        }
        if let Some(help) = &diagnostic.help {
            report = report.with_help(help);
        }
        // Writing to a Vec cannot fail.
        let _ = report.finish().write(&mut cache, &mut out);
    }
    String::from_utf8_lossy(&out).into_owned()
}
