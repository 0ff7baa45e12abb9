//! The set of source files a run works on, and byte-offset → line/column mapping.

use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Identifies a file in a [`SourceMap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct FileId(pub u32);

/// One source file: where it came from and its text.
#[derive(Debug)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: Arc<str>,
    line_starts: Vec<u32>,
}

impl SourceFile {
    /// 1-based line and 1-based column (in characters) of a byte offset.
    pub fn line_col(&self, offset: u32) -> (u32, u32) {
        let offset = offset.min(self.text.len() as u32);
        let line = self.line_starts.partition_point(|&start| start <= offset) - 1;
        let start = self.line_starts[line] as usize;
        let column = self.text[start..offset as usize].chars().count() as u32;
        (line as u32 + 1, column + 1)
    }

    /// The byte offset of a 1-based line and column (in characters), as [`SourceFile::line_col`]
    /// gives them (and the IR's origins hold them); `None` past the text.
    pub fn offset(&self, line: u32, column: u32) -> Option<u32> {
        offset_in(&self.text, line, column)
    }

    /// Start and end positions of a span as (line, column) pairs, both 1-based.
    pub fn span_lines(&self, span: Span) -> ((u32, u32), (u32, u32)) {
        (self.line_col(span.start), self.line_col(span.end))
    }
}

/// The byte offset of a 1-based line and column (in characters) of `text`; `None` past it.
pub fn offset_in(text: &str, line: u32, column: u32) -> Option<u32> {
    if line == 0 {
        return None;
    }
    let mut start = 0;
    for _ in 1..line {
        start += text[start..].find('\n')? + 1;
    }
    let rest = &text[start..];
    let end = rest.find('\n').unwrap_or(rest.len());
    let within = rest[..end].char_indices().map(|(i, _)| i).chain([end]).nth((column as usize).checked_sub(1)?)?;
    Some((start + within) as u32)
}

/// All files of one run. Files keep the order they were added in.
#[derive(Debug, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    /// An empty map.
    pub fn new() -> SourceMap {
        SourceMap::default()
    }

    /// Adds a file and returns its id.
    pub fn add(&mut self, path: impl Into<PathBuf>, text: impl Into<Arc<str>>) -> FileId {
        let text: Arc<str> = text.into();
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i as u32 + 1));
        let id = FileId(self.files.len() as u32);
        self.files.push(SourceFile { path: path.into(), text, line_starts });
        id
    }

    /// Forgets the files after the first `len` (those added for rendering, to be added again).
    pub fn truncate(&mut self, len: usize) {
        self.files.truncate(len);
    }

    /// The file with this id.
    pub fn get(&self, id: FileId) -> &SourceFile {
        &self.files[id.0 as usize]
    }

    /// Every file with its id.
    pub fn iter(&self) -> impl Iterator<Item = (FileId, &SourceFile)> {
        self.files.iter().enumerate().map(|(i, file)| (FileId(i as u32), file))
    }

    /// The id of the file at `path`, if present.
    pub fn find(&self, path: &Path) -> Option<FileId> {
        self.iter().find(|(_, file)| file.path == path).map(|(id, _)| id)
    }

    /// How many files.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether there are no files.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters() {
        let mut map = SourceMap::new();
        let id = map.add("a.apt", "ab\nçd\n");
        let file = map.get(id);
        assert_eq!(file.line_col(0), (1, 1));
        assert_eq!(file.line_col(3), (2, 1));
        assert_eq!(file.line_col(5), (2, 2)); // after the two-byte 'ç'
        assert_eq!(file.line_col(99), (3, 1));
    }

    #[test]
    fn offset_is_the_inverse_of_line_col() {
        let mut map = SourceMap::new();
        let id = map.add("a.apt", "ab\nçd\n");
        let file = map.get(id);
        for offset in [0, 1, 2, 3, 5, 6] {
            let (line, column) = file.line_col(offset);
            assert_eq!(file.offset(line, column), Some(offset));
        }
        assert_eq!(file.offset(2, 4), None);
        assert_eq!(file.offset(0, 1), None);
        assert_eq!(file.offset(9, 1), None);
    }
}

/// A byte range in one file. `u32` keeps nodes small; files over 4 GiB are refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    /// A span from byte offsets (saturating at `u32::MAX`).
    pub fn new(start: usize, end: usize) -> Span {
        let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Span { start: clamp(start), end: clamp(end) }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span { start: self.start.min(other.start), end: self.end.max(other.end) }
    }

    /// As a `Range<usize>`, for slicing the source.
    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}
