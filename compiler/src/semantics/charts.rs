//! Local charts (docs/language.md §5.1): a chart component whose chart is a path on disk
//! (`./`, `../` or `/`, without `repo`; [`aptc_core::ir::is_local_chart`], the rule the runtime
//! deploys by) must name a chart Helm can read, a directory with a `Chart.yaml` or a packaged
//! `.tgz`, so that a missing chart is an error of `aptc check` (APT0210) rather than of a deploy.
//!
//! What is on disk is an input ([`LocalChart`]), looked at by whoever builds the workspace
//! (`check::load_workspace`, `check::refresh_charts`); this module only reads it. A chart written
//! with an interpolation cannot be known here and is skipped (it is an error of its own, APT0310).

use std::path::{Path, PathBuf};

use crate::db::{ChartOnDisk, SourceText, Workspace, parse_file, report};
use crate::diagnostics::{Diagnostic, codes};
use crate::syntax::ast::{ComponentSource, ComponentStmt, SourceFile, Span};

/// The local charts the chart components of `file` name: the span of each chart string and the
/// chart as written, in order.
pub fn local_charts(file: &SourceFile) -> Vec<(Span, String)> {
    let mut out = Vec::new();
    for component in file.components() {
        let ComponentSource::Chart(lit) = &component.source.node else { continue };
        let Some(chart) = lit.as_plain() else { continue };
        let has_repo = component.body.iter().flat_map(|b| &b.stmts).any(|s| matches!(s.node, ComponentStmt::Repo(_)));
        if aptc_core::ir::is_local_chart(&chart, has_repo) {
            out.push((lit.span, chart));
        }
    }
    out
}

/// Where a local chart `chart` written in the file at `declaring_file` is: relative to the
/// file's directory (as the runtime resolves it, `Source::base_dir`).
pub fn chart_path(declaring_file: &Path, chart: &str) -> PathBuf {
    declaring_file.parent().unwrap_or(Path::new("")).join(chart)
}

/// Reports each local chart of `file` that cannot be used (APT0210).
#[salsa::tracked]
pub fn check_charts(db: &dyn salsa::Database, ws: Workspace, file: SourceText) {
    let id = file.id(db);
    for (span, chart) in local_charts(&parse_file(db, file).file) {
        // Not looked at yet: a component added in an editor since; the next refresh tells.
        let Some(local) = ws.chart_of(db, id, &chart) else { continue };
        let path = shown(local.path(db));
        let (message, help) = match local.on_disk(db) {
            ChartOnDisk::Directory | ChartOnDisk::Archive => continue,
            ChartOnDisk::Missing => (
                format!("local chart `{chart}` does not exist: there is nothing at `{path}`"),
                "a local chart's path is relative to the directory of this .apt file: correct the path, create \
                 the chart there (`helm create`), or name a chart of a repository (`repo \"URL\"`, `REPO/CHART` or \
                 `oci://…`)",
            ),
            ChartOnDisk::NoChartYaml => (
                format!("local chart `{chart}` is not a chart: the directory `{path}` has no `Chart.yaml`"),
                "a chart directory holds a `Chart.yaml` file (the chart's name and version); `helm create` makes \
                 one",
            ),
            ChartOnDisk::NotAChart => (
                format!(
                    "local chart `{chart}` is not a chart: `{path}` is a file, neither a chart directory nor a \
                     packaged chart (`.tgz`)"
                ),
                "name the chart's directory, or a chart packaged by `helm package` (`NAME-VERSION.tgz`)",
            ),
            ChartOnDisk::Unreadable(reason) => (
                format!("local chart `{chart}` cannot be read: `{path}`: {reason}"),
                "aptc must be able to read the chart to deploy it",
            ),
        };
        report(
            db,
            Diagnostic::new(codes::INVALID_LOCAL_CHART, id, span, message)
                .with_primary_message(format!("the chart at `{path}`"))
                .with_help(help),
        );
    }
}

/// A chart path for people: `./` steps inside it dropped (`examples/./charts/x` is
/// `examples/charts/x`); `..` kept, since symbolic links make it more than text.
fn shown(path: &Path) -> String {
    path.components().collect::<PathBuf>().display().to_string()
}
