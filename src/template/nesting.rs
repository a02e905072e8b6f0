//! Compile-time analysis of a parsed template: the JSON string depth of every `{{ }}`, the
//! rewrite that makes nested values escaped once per level, the helper-name check, and the
//! variable paths the template reads.

use std::collections::HashMap;

use handlebars::template::{
    HelperTemplate, Parameter, Subexpression, Template as Parsed, TemplateElement,
};
use handlebars::{Path, PathSeg};
use serde_json::Value;

use super::helpers::NEST;

/// Helpers a template may call: handlebars' built-ins plus this crate's `json` and `rfc3339`.
/// Calling anything else is a compile error (handlebars would fail every render instead).
pub(super) const KNOWN_HELPERS: &[&str] = &[
    "if", "unless", "each", "with", "lookup", "raw", "log", "eq", "ne", "gt", "gte", "lt", "lte",
    "and", "or", "not", "len", "json", "rfc3339",
];

/// Block helpers whose body is rendered against another context: paths inside are relative.
const SCOPING_HELPERS: &[&str] = &["each", "with"];

/// Where one output mustache (`{{ }}`, `{{{ }}}` or `{{& }}`) sits, as the compiler saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Mustache {
    /// 1-based line of the tag in the template source.
    pub line: usize,
    /// 1-based column of the tag in the template source.
    pub column: usize,
    /// JSON string nesting depth of the literal text around the tag (0: outside strings).
    pub depth: usize,
    /// Whether it is a raw `{{{ }}}`/`{{& }}` (never escaped, never rewritten).
    pub raw: bool,
}

/// What the analysis of a template found.
#[derive(Debug, Default)]
pub(super) struct Analysis {
    /// Every output mustache, in source order.
    pub mustaches: Vec<Mustache>,
    /// Root-relative variable paths, deduplicated, in order of first use.
    pub paths: Vec<Vec<String>>,
}

/// A compile-time problem found by the analysis, with its position when known.
#[derive(Debug)]
pub(super) struct Problem {
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

/// Tracks the JSON string depth of literal template text, read in source order.
///
/// A `"` preceded by `k` backslashes belongs to level `n = 1 + (trailing one bits of k)`:
/// 0 backslashes → 1, 1 → 2, 3 → 3, 7 → 4; any further pairs in front (`\\`) are escaped
/// backslashes of that level. A quote of the current depth closes it, one of depth + 1 opens
/// a deeper string, any other is literal text.
#[derive(Debug, Default)]
pub(super) struct QuoteLexer {
    depth: usize,
    backslashes: usize,
}

impl QuoteLexer {
    /// The current depth: 0 outside any string, 1 inside a string, 2 inside a string inside it.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Reads literal text.
    pub fn feed(&mut self, text: &str) {
        for b in text.bytes() {
            match b {
                b'\\' => self.backslashes += 1,
                b'"' => {
                    let level = self.backslashes.trailing_ones() as usize + 1;
                    if level == self.depth {
                        self.depth -= 1;
                    } else if level == self.depth + 1 {
                        self.depth += 1;
                    }
                    self.backslashes = 0;
                }
                _ => self.backslashes = 0,
            }
        }
    }

    /// Output from a tag separates the text before it from the text after it.
    pub fn interrupt(&mut self) {
        self.backslashes = 0;
    }
}

/// Analyses `template` and rewrites its output expressions in place so that a value at depth
/// `d ≥ 2` (and a helper call at depth `d ≥ 1`) becomes `{{__nest d-1 value}}`.
pub(super) fn analyse(template: &mut Parsed) -> Result<Analysis, Problem> {
    let mut walker = Walker::default();
    walker.template(template, 0)?;
    Ok(walker.analysis)
}

#[derive(Default)]
struct Walker {
    lexer: QuoteLexer,
    analysis: Analysis,
}

impl Walker {
    /// Walks the elements of one (sub)template. `scope` counts the enclosing `#each`/`#with`.
    fn template(&mut self, template: &mut Parsed, scope: usize) -> Result<(), Problem> {
        let mapping = &template.mapping;
        for (idx, element) in template.elements.iter_mut().enumerate() {
            let (line, column) = mapping
                .get(idx)
                .map_or((None, None), |m| (Some(m.0), Some(m.1)));
            let at = |message: String| Problem {
                line,
                column,
                message,
            };
            match element {
                TemplateElement::RawString(text) => self.lexer.feed(text),
                TemplateElement::Comment(_) => {}
                TemplateElement::Expression(ht) | TemplateElement::HtmlExpression(ht) => {
                    check_helpers(ht).map_err(at)?;
                    self.collect_helper_template(ht, scope);
                    let depth = self.lexer.depth();
                    self.lexer.interrupt();
                    let is_raw = matches!(element, TemplateElement::HtmlExpression(_));
                    self.analysis.mustaches.push(Mustache {
                        line: line.unwrap_or(0),
                        column: column.unwrap_or(0),
                        depth,
                        raw: is_raw,
                    });
                    if let TemplateElement::Expression(ht) = element {
                        rewrite(ht, depth);
                    }
                }
                TemplateElement::HelperBlock(ht) => {
                    check_helpers(ht).map_err(at)?;
                    self.collect_helper_template(ht, scope);
                    self.lexer.interrupt();
                    let inner_scope = match ht.name.as_name() {
                        Some(name) if SCOPING_HELPERS.contains(&name) => scope + 1,
                        _ => scope,
                    };
                    if let Some(body) = ht.template.as_mut() {
                        self.template(body, inner_scope)?;
                    }
                    if let Some(inverse) = ht.inverse.as_mut() {
                        self.template(inverse, scope)?;
                    }
                    self.lexer.interrupt();
                }
                // Partials, inline partials and decorators are left alone: their text is not
                // rendered where it is written, so it is neither lexed nor rewritten.
                _ => self.lexer.interrupt(),
            }
        }
        Ok(())
    }

    /// Records the root-relative paths `ht` reads (its name when it is a path, its parameters
    /// and hash values, recursively through subexpressions).
    fn collect_helper_template(&mut self, ht: &HelperTemplate, scope: usize) {
        let name_only = !ht.block && ht.params.is_empty() && ht.hash.is_empty();
        match &ht.name {
            Parameter::Path(path) if name_only && !KNOWN_HELPERS.contains(&path_raw(path)) => {
                self.collect_path(path, scope);
            }
            Parameter::Subexpression(sub) => self.collect_subexpression(sub, scope),
            _ => {}
        }
        for param in ht.params.iter().chain(ht.hash.values()) {
            self.collect_parameter(param, scope);
        }
    }

    fn collect_parameter(&mut self, param: &Parameter, scope: usize) {
        match param {
            Parameter::Path(path) => self.collect_path(path, scope),
            Parameter::Subexpression(sub) => self.collect_subexpression(sub, scope),
            _ => {}
        }
    }

    fn collect_subexpression(&mut self, sub: &Subexpression, scope: usize) {
        if let TemplateElement::Expression(ht) = sub.as_element() {
            for param in ht.params.iter().chain(ht.hash.values()) {
                self.collect_parameter(param, scope);
            }
        }
    }

    fn collect_path(&mut self, path: &Path, scope: usize) {
        if let Some(segments) = root_segments(path, scope) {
            if !self.analysis.paths.contains(&segments) {
                self.analysis.paths.push(segments);
            }
        }
    }
}

/// The source text of a path, e.g. `data.access_groups.[0]`.
fn path_raw(path: &Path) -> &str {
    match path {
        Path::Relative((_, raw)) | Path::Local((_, _, raw)) => raw,
    }
}

/// Rejects unknown helpers and calls to the private `__nest`, anywhere in `ht`'s name,
/// parameters or hash.
fn check_helpers(ht: &HelperTemplate) -> Result<(), String> {
    let name_only = !ht.block && ht.params.is_empty() && ht.hash.is_empty();
    match &ht.name {
        Parameter::Name(name) => check_helper_name(name)?,
        Parameter::Path(path) if !name_only => check_helper_name(path_raw(path))?,
        Parameter::Path(path) if path_raw(path) == NEST => check_helper_name(NEST)?,
        Parameter::Subexpression(sub) => check_subexpression(sub)?,
        _ => {}
    }
    for param in ht.params.iter().chain(ht.hash.values()) {
        check_parameter(param)?;
    }
    Ok(())
}

fn check_helper_name(name: &str) -> Result<(), String> {
    if name == NEST {
        Err(format!("`{NEST}` is reserved for the compiler"))
    } else if KNOWN_HELPERS.contains(&name) {
        Ok(())
    } else {
        Err(format!(
            "unknown helper `{name}` (known: {})",
            KNOWN_HELPERS.join(", ")
        ))
    }
}

fn check_subexpression(sub: &Subexpression) -> Result<(), String> {
    if let TemplateElement::Expression(ht) = sub.as_element() {
        // In a subexpression the name is always looked up as a helper, even `(a.b)`.
        if let Some(name) = ht.name.as_name() {
            check_helper_name(name)?;
        }
        for param in ht.params.iter().chain(ht.hash.values()) {
            check_parameter(param)?;
        }
    }
    Ok(())
}

fn check_parameter(param: &Parameter) -> Result<(), String> {
    match param {
        Parameter::Subexpression(sub) => check_subexpression(sub),
        _ => Ok(()),
    }
}

/// The segments of a path that is read from the event's root, or `None` for `this`, `@index`
/// and other local variables, `../` paths, and paths inside `#each`/`#with` (relative to the
/// block's context) unless they start with `@root`.
fn root_segments(path: &Path, scope: usize) -> Option<Vec<String>> {
    let Path::Relative((segs, _)) = path else {
        return None;
    };
    let mut rooted = false;
    let mut segments = Vec::with_capacity(segs.len());
    for (i, seg) in segs.iter().enumerate() {
        match seg {
            PathSeg::Named(name) => segments.push(name.clone()),
            // `PathSeg::Ruled` carries a grammar rule handlebars does not export by name.
            PathSeg::Ruled(rule) if i == 0 && format!("{rule:?}") == "path_root" => {
                rooted = true;
            }
            _ => return None,
        }
    }
    (!segments.is_empty() && (rooted || scope == 0)).then_some(segments)
}

/// Rewrites one escaped output expression at JSON string `depth`.
///
/// - a plain value at depth ≥ 2: `{{ p }}` → `{{__nest d-1 p}}`;
/// - a helper call at depth ≥ 1: `{{ h a b }}` → `{{__nest d-1 (h a b)}}`, so raw-writing
///   helpers (`json`) are escaped inside strings too;
/// - anything at depth 0, and a plain value at depth 1, is left to the escape function.
fn rewrite(ht: &mut HelperTemplate, depth: usize) {
    let name_only = !ht.block && ht.params.is_empty() && ht.hash.is_empty();
    let value = if name_only {
        if depth < 2 {
            return;
        }
        match &ht.name {
            // `{{ json }}` with no parameters is a helper call, not a path.
            Parameter::Path(path) if KNOWN_HELPERS.contains(&path_raw(path)) => {
                Parameter::Subexpression(Subexpression::new(
                    Parameter::Name(path_raw(path).to_owned()),
                    Vec::new(),
                    HashMap::new(),
                ))
            }
            other => other.clone(),
        }
    } else {
        if depth < 1 {
            return;
        }
        Parameter::Subexpression(Subexpression::new(
            ht.name.clone(),
            std::mem::take(&mut ht.params),
            std::mem::take(&mut ht.hash),
        ))
    };
    ht.name = Parameter::Name(NEST.to_owned());
    ht.params = vec![Parameter::Literal(Value::from(depth - 1)), value];
    ht.hash.clear();
}
