//! Label and field selectors, as lists and watches take them (`?labelSelector=`,
//! `?fieldSelector=`): the equality and set-based label grammar
//! (`a=b,c!=d,e in (f,g),h notin (i),j,!k`) and the field selectors every kind has
//! (`metadata.name`, `metadata.namespace`).

use serde_json::Value;

/// One term of a selector.
#[derive(Clone, Debug)]
enum Term {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    Absent(String),
}

/// A parsed label or field selector; the empty selector matches everything.
#[derive(Clone, Debug, Default)]
pub(crate) struct Selector {
    labels: Vec<Term>,
    fields: Vec<Term>,
}

impl Selector {
    /// The selector of a request's `labelSelector` and `fieldSelector` (already percent-decoded);
    /// an error is the message of the API server's 400.
    pub(crate) fn parse(labels: &str, fields: &str) -> Result<Selector, String> {
        let labels = split(labels)?.into_iter().map(|t| label_term(&t)).collect::<Result<Vec<_>, _>>()?;
        let fields = split(fields)?.into_iter().map(|t| field_term(&t)).collect::<Result<Vec<_>, _>>()?;
        Ok(Selector { labels, fields })
    }

    /// Whether `object` is selected.
    pub(crate) fn matches(&self, object: &Value) -> bool {
        let metadata = &object["metadata"];
        let label = |key: &str| metadata["labels"][key].as_str();
        let field = |key: &str| match key {
            "metadata.name" => metadata["name"].as_str(),
            _ => Some(metadata["namespace"].as_str().unwrap_or_default()),
        };
        self.labels.iter().all(|t| holds(t, label)) && self.fields.iter().all(|t| holds(t, field))
    }
}

fn holds<'v>(term: &Term, value: impl Fn(&str) -> Option<&'v str>) -> bool {
    match term {
        Term::Equals(key, want) => value(key) == Some(want),
        Term::NotEquals(key, want) => value(key) != Some(want),
        Term::In(key, set) => value(key).is_some_and(|v| set.iter().any(|s| s == v)),
        Term::NotIn(key, set) => value(key).is_none_or(|v| !set.iter().any(|s| s == v)),
        Term::Exists(key) => value(key).is_some(),
        Term::Absent(key) => value(key).is_none(),
    }
}

/// The terms of a selector: commas separate them, except inside a set's parentheses.
fn split(text: &str) -> Result<Vec<String>, String> {
    let (mut terms, mut current, mut depth) = (Vec::new(), String::new(), 0u32);
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.checked_sub(1).ok_or_else(|| format!("unbalanced parentheses in \"{text}\""))?,
            ',' if depth == 0 => {
                terms.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    if depth != 0 {
        return Err(format!("unbalanced parentheses in \"{text}\""));
    }
    terms.push(current);
    Ok(terms.into_iter().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect())
}

fn label_term(term: &str) -> Result<Term, String> {
    if let Some(key) = term.strip_prefix('!') {
        return Ok(Term::Absent(key.trim().to_string()));
    }
    if let Some((key, value)) = term.split_once("!=") {
        return Ok(Term::NotEquals(key.trim().into(), value.trim().into()));
    }
    if let Some((key, value)) = term.split_once('=') {
        return Ok(Term::Equals(key.trim().into(), value.trim_start_matches('=').trim().into()));
    }
    let words: Vec<&str> = term.splitn(3, ' ').map(str::trim).collect();
    match words.as_slice() {
        [key] => Ok(Term::Exists((*key).to_string())),
        [key, operator @ ("in" | "notin"), set] => {
            let Some(set) = set.trim().strip_prefix('(').and_then(|s| s.strip_suffix(')')) else {
                return Err(format!("unable to parse requirement: \"{term}\": a set needs parentheses"));
            };
            let set = set.split(',').map(|v| v.trim().to_string()).collect();
            Ok(if *operator == "in" { Term::In((*key).into(), set) } else { Term::NotIn((*key).into(), set) })
        }
        _ => Err(format!("unable to parse requirement: \"{term}\"")),
    }
}

fn field_term(term: &str) -> Result<Term, String> {
    let term = label_term(term)?;
    let key = match &term {
        Term::Equals(key, _) | Term::NotEquals(key, _) => key,
        _ => return Err("field selectors take only =, == and !=".into()),
    };
    if key != "metadata.name" && key != "metadata.namespace" {
        return Err(format!("field label not supported: {key}"));
    }
    Ok(term)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn equality_and_set_terms_select_by_label() {
        let object =
            json!({ "metadata": { "name": "a", "namespace": "n", "labels": { "app": "web", "tier": "front" } } });
        let selects = |labels: &str, fields: &str| Selector::parse(labels, fields).unwrap().matches(&object);
        assert!(selects("", ""));
        assert!(selects("app=web,tier==front", ""));
        assert!(!selects("app!=web", ""));
        assert!(selects("app in (db, web),tier", ""));
        assert!(!selects("app notin (web)", ""));
        assert!(selects("!owner,tier notin (back)", ""));
        assert!(selects("", "metadata.name=a,metadata.namespace=n"));
        assert!(!selects("", "metadata.name!=a"));
        assert!(Selector::parse("app in (web", "").is_err());
        assert!(Selector::parse("app in web", "").is_err());
        assert_eq!(Selector::parse("", "spec.x=1").unwrap_err(), "field label not supported: spec.x");
    }
}
