//! Signature help: the standard-library function whose arguments the cursor is in, its
//! parameters and which one is being written.

use crate::db::{SourceText, Workspace};
use crate::semantics::index::workspace_index;
use crate::syntax::ast::Span;
use crate::syntax::lexer::{Token, lex};

use super::{Target, definitions, hover::declaration};

/// A function's signature as shown while its arguments are written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureHelp {
    /// `lower(s: string) -> string`.
    pub label: String,
    /// Each parameter's byte range in `label`.
    pub parameters: Vec<(u32, u32)>,
    /// The parameter the cursor is in (by the commas before it).
    pub active: u32,
    pub docs: Option<String>,
}

/// Signature help at `offset`, in code or in a `${…}` interpolation.
pub fn signature_help(db: &dyn salsa::Database, ws: Workspace, file: SourceText, offset: u32) -> Option<SignatureHelp> {
    let text = file.text(db);
    let (name, active) = call_at(text, offset)?;
    let signature = workspace_index(db, ws).functions.get(name.as_str())?.clone();
    let mut label = format!("{name}(");
    let mut parameters = Vec::new();
    for (i, (param, ty)) in signature.params.iter().enumerate() {
        if i > 0 {
            label.push_str(", ");
        }
        let start = label.len() as u32;
        label.push_str(&format!("{param}: {ty}"));
        parameters.push((start, label.len() as u32));
    }
    label.push_str(&format!(") -> {}", signature.ret));
    let docs = definitions(db, ws, &Target::Function(name.as_str().into()))
        .into_iter()
        .next()
        .and_then(|site| declaration(db, ws, site))
        .and_then(|d| d.docs);
    Some(SignatureHelp { label, parameters, active, docs })
}

/// The function called around `offset` and how many of its arguments come before it.
fn call_at(text: &str, offset: u32) -> Option<(String, u32)> {
    let lexed = lex(text);
    let tokens = &lexed.tokens;
    let before = tokens.partition_point(|(_, span)| span.end <= offset);
    // Inside a string: look in the interpolation that holds the cursor.
    if let Some((Token::Str(_), span)) = tokens.get(before)
        && span.start < offset
        && let Some(call) = in_interpolation(text, *span, offset)
    {
        return Some(call);
    }
    let mut depth = 0u32;
    let mut commas = 0u32;
    for i in (0..before).rev() {
        match tokens[i].0 {
            Token::RParen | Token::RBracket | Token::RBrace => depth += 1,
            // Inside a list argument: its commas separate items, not arguments.
            Token::LBracket if depth == 0 => commas = 0,
            Token::LBrace if depth == 0 => return None,
            Token::LParen if depth == 0 => {
                return match i.checked_sub(1).map(|j| tokens[j].0) {
                    Some(Token::Ident(name)) => Some((name.to_string(), commas)),
                    _ => None,
                };
            }
            Token::LParen | Token::LBracket | Token::LBrace => depth -= 1,
            Token::Comma if depth == 0 => commas += 1,
            _ => {}
        }
    }
    None
}

/// [`call_at`] inside the `${…}` of the string at `span` that holds `offset`.
fn in_interpolation(text: &str, span: Span, offset: u32) -> Option<(String, u32)> {
    let string = text.get(span.start as usize..span.end as usize)?;
    let relative = (offset - span.start) as usize;
    let open = string.get(..relative)?.rfind("${")? + 2;
    call_at(&string[open..relative], (relative - open) as u32)
}
