//! Compile-time analysis of a parsed template: the JSON string depth of every `{{ }}`, the
//! rewrite that makes nested values escaped once per level, the helper-name check, and the
//! variable paths the template reads.
//!
//! The depth is read from the literal text alone, so the analysis refuses every construct
//! whose effect on that text it cannot follow (each is a [`Problem`] with the position of the
//! construct):
//! - a JSON unicode escape of `"` or `\` (`\u0022`, `\u005c`, any case) in the text: it
//!   opens or closes a string one level down without looking like a quote;
//! - backslashes right before a tag that are not whole escapes at the tag's depth (a multiple
//!   of 2^depth; none outside strings), and an unfinished `\u` escape right before a tag:
//!   they would combine with the first characters the tag writes;
//! - `{{{ }}}` and `{{& }}` inside a JSON string: the value is written unescaped and could end
//!   the string;
//! - a block (`{{#if}}`, `{{#each}}`, …) one of whose branches does not end at the depth it
//!   started at: which branch renders is only known at render time;
//! - partials (`{{> }}`, `{{#> }}`), inline partials (`{{#*inline}}`) and other decorators:
//!   their text is rendered somewhere else than where it is written.
//!
//! Comments are never rendered, so quotes inside them count for nothing and backslashes
//! before and after one join up. Whitespace control (`{{~ }}`) and the removal of whitespace
//! around standalone tags are applied by the parser, so the analysis reads the text exactly
//! as it will be written. Raw blocks (`{{{{raw}}}}…{{{{/raw}}}}`) are literal text, read as
//! such.

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
///
/// # Errors
/// A [`Problem`] for every construct the depth analysis cannot follow (see the module docs)
/// and for an unknown helper.
pub(super) fn analyse(template: &mut Parsed) -> Result<Analysis, Problem> {
    let mut walker = Walker::default();
    walker.template(template, 0, None)?;
    Ok(walker.analysis)
}

/// The first JSON unicode escape of `"` or `\` in `text` (`\u0022`, `\u005c`, any case of the
/// hex digits), with its byte offset.
fn find_quote_escape(text: &str) -> Option<(usize, &str)> {
    text.match_indices("\\u").find_map(|(i, _)| {
        let escape = text.get(i..i + 6)?;
        let hex = escape[2..].to_ascii_lowercase();
        (hex == "0022" || hex == "005c").then_some((i, escape))
    })
}

/// The position after `text`, starting at 1-based `line` and `column`.
fn advance(mut line: usize, mut column: usize, text: &str) -> (usize, usize) {
    for c in text.chars() {
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    (line, column)
}

#[derive(Default)]
struct Walker {
    lexer: QuoteLexer,
    analysis: Analysis,
    /// The end of the literal text written since the last tag (comments write nothing, so
    /// text on both sides of one joins up): enough to see an escape split by a comment and
    /// what stands right before the next tag.
    tail: String,
}

/// At most this many bytes of [`Walker::tail`] are kept between two pieces of text: longer
/// than `\u0022` and than an unfinished `\uXXX`.
const TAIL_KEPT: usize = 8;

/// What the problems say to do instead of a construct the analysis cannot follow.
const WRITE_IN_PLACE: &str = "write the text in place";

/// Why a tag the depth analysis cannot follow is refused.
fn unsupported(element: &TemplateElement) -> String {
    match element {
        TemplateElement::PartialExpression(_) | TemplateElement::PartialBlock(_) => format!(
            "partials (`{{{{> name}}}}`, `{{{{#> name}}}}`) are not supported: their \
             text is written somewhere else than where it stands, so its JSON \
             string depth cannot be known; {WRITE_IN_PLACE}"
        ),
        TemplateElement::DecoratorExpression(_) | TemplateElement::DecoratorBlock(_) => format!(
            "inline partials (`{{{{#*inline}}}}`) and decorators are not supported: \
             their text is written somewhere else than where it stands, so its JSON \
             string depth cannot be known; {WRITE_IN_PLACE}"
        ),
        // A construct of a later handlebars version: refused until it is understood.
        _ => "this kind of tag is not supported: its effect on the JSON string depth is unknown"
            .to_owned(),
    }
}

impl Walker {
    /// Walks the elements of one (sub)template. `scope` counts the enclosing `#each`/`#with`.
    /// `block` is the enclosing block's position (`None` for the whole template): a branch of
    /// a block ends at a tag (`{{else}}`, `{{/if}}`), reported there; the whole template ends
    /// at no tag.
    fn template(
        &mut self,
        template: &mut Parsed,
        scope: usize,
        block: Option<(Option<usize>, Option<usize>)>,
    ) -> Result<(), Problem> {
        let end = block.unwrap_or((None, None));
        let mapping = &template.mapping;
        for (idx, element) in template.elements.iter_mut().enumerate() {
            // Elements handlebars made up (the `if` of `{{else if}}`) have no position of their
            // own: report the enclosing block's.
            let (line, column) = mapping.get(idx).map_or(end, |m| (Some(m.0), Some(m.1)));
            let at = |message: String| Problem {
                line,
                column,
                message,
            };
            match element {
                TemplateElement::RawString(text) => {
                    self.text(text, line, column)?;
                    self.lexer.feed(text);
                }
                TemplateElement::Comment(_) => {}
                TemplateElement::Expression(ht) => {
                    self.expression(ht, false, scope, (line, column))
                        .map_err(at)?;
                }
                TemplateElement::HtmlExpression(ht) => {
                    self.expression(ht, true, scope, (line, column))
                        .map_err(at)?;
                }
                TemplateElement::HelperBlock(ht) => {
                    self.block(ht, scope, (line, column))?;
                }
                other => return Err(at(unsupported(other))),
            }
        }
        if block.is_none() {
            return Ok(());
        }
        self.before_tag().map_err(|message| Problem {
            line: end.0,
            column: end.1,
            message,
        })
    }

    /// One `{{ }}` (or, `raw`, `{{{ }}}`/`{{& }}`): recorded with its JSON string depth and,
    /// for an escaped one, rewritten to escape once per level. A raw one inside a string is
    /// refused: a quote in its value would end the string.
    fn expression(
        &mut self,
        ht: &mut HelperTemplate,
        raw: bool,
        scope: usize,
        (line, column): (Option<usize>, Option<usize>),
    ) -> Result<(), String> {
        check_helpers(ht)?;
        self.before_tag()?;
        self.collect_helper_template(ht, scope);
        let depth = self.lexer.depth();
        self.lexer.interrupt();
        if raw && depth > 0 {
            return Err(format!(
                "`{{{{{{ }}}}}}` (or `{{{{& }}}}`) inside a JSON string (depth {depth}) \
                 writes the value unescaped, so a quote in it would end the string; \
                 use `{{{{ }}}}`"
            ));
        }
        self.analysis.mustaches.push(Mustache {
            line: line.unwrap_or(0),
            column: column.unwrap_or(0),
            depth,
            raw,
        });
        if !raw {
            rewrite(ht, depth);
        }
        Ok(())
    }

    /// A block (`{{#if}}`, `{{#each}}`, …): every branch is walked and must end at the JSON
    /// string depth the block started at (`raw` writes its body once and need not balance).
    fn block(
        &mut self,
        ht: &mut HelperTemplate,
        scope: usize,
        (line, column): (Option<usize>, Option<usize>),
    ) -> Result<(), Problem> {
        let at = |message: String| Problem {
            line,
            column,
            message,
        };
        check_helpers(ht).map_err(at)?;
        self.before_tag().map_err(at)?;
        self.collect_helper_template(ht, scope);
        self.lexer.interrupt();
        let name = ht.name.as_name().unwrap_or("block").to_owned();
        let inner_scope = if SCOPING_HELPERS.contains(&name.as_str()) {
            scope + 1
        } else {
            scope
        };
        let must_balance = name != "raw";
        let start = self.lexer.depth();
        let branches = [(ht.template.as_mut(), inner_scope, "body")]
            .into_iter()
            .chain([(ht.inverse.as_mut(), scope, "`{{else}}` branch")]);
        for (branch, branch_scope, what) in branches {
            let Some(branch) = branch else { continue };
            self.template(branch, branch_scope, Some((line, column)))?;
            let ended = self.lexer.depth();
            if must_balance && ended != start {
                return Err(at(format!(
                    "the quotes inside `{{{{#{name}}}}}` do not balance: the block \
                     starts at JSON string depth {start} and its {what} ends at depth \
                     {ended}; every branch of a block must end at the depth it \
                     started at"
                )));
            }
        }
        self.lexer.interrupt();
        Ok(())
    }

    /// Checks one piece of literal text (at `line`, `column`) for a unicode escape of `"` or
    /// `\`, also one split from earlier text by a comment.
    fn text(
        &mut self,
        text: &str,
        line: Option<usize>,
        column: Option<usize>,
    ) -> Result<(), Problem> {
        let earlier = self.tail.len();
        self.tail.push_str(text);
        if let Some((offset, escape)) = find_quote_escape(&self.tail) {
            let (line, column) = match (line, column) {
                // handlebars places a piece of text at its first character that is not
                // whitespace.
                (Some(line), Some(column)) if offset >= earlier => {
                    let offset = offset - earlier;
                    let lead = text.len() - text.trim_start().len();
                    let (l, c) = advance(line, column, text.get(lead..offset).unwrap_or(""));
                    (Some(l), Some(c))
                }
                other => other,
            };
            let meaning = if escape.ends_with("22") { "\"" } else { "\\" };
            return Err(Problem {
                line,
                column,
                message: format!(
                    "`{escape}` is a JSON escape of `{meaning}`: the depth of nested JSON \
                     strings is read from the quotes and backslashes as written, so write \
                     `\\{meaning}` (escaped once more per nesting level) instead"
                ),
            });
        }
        let mut keep = self.tail.len().saturating_sub(TAIL_KEPT);
        while !self.tail.is_char_boundary(keep) {
            keep -= 1;
        }
        self.tail.drain(..keep);
        Ok(())
    }

    /// Checks the text right before a tag (an expression, a block's opening or closing tag):
    /// its trailing backslashes must be whole escapes at the current depth and it must not end
    /// in an unfinished `\u` escape. Then starts over after the tag.
    fn before_tag(&mut self) -> Result<(), String> {
        let tail = std::mem::take(&mut self.tail);
        let depth = self.lexer.depth();
        let backslashes = tail.bytes().rev().take_while(|b| *b == b'\\').count();
        if backslashes > 0 && depth == 0 {
            return Err(format!(
                "{backslashes} backslash(es) right before `{{{{` outside any JSON string: they \
                 would escape the first character the tag writes"
            ));
        }
        // At depth d one backslash is written as 2^d backslashes in the template.
        let unit = u32::try_from(depth)
            .ok()
            .and_then(|d| 1usize.checked_shl(d));
        if backslashes > 0 && unit.is_none_or(|unit| backslashes % unit != 0) {
            let unit = unit.map_or_else(|| format!("2^{depth}"), |unit| unit.to_string());
            return Err(format!(
                "{backslashes} backslash(es) right before `{{{{` inside a JSON string of depth \
                 {depth}: they would escape the first character the tag writes; a backslash \
                 there is written as {unit} backslashes"
            ));
        }
        if let Some(i) = tail.rfind('\\') {
            let after = &tail[i + 1..];
            if let Some(hex) = after.strip_prefix('u') {
                if hex.len() < 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(format!(
                        "an unfinished `\\{after}` escape right before `{{{{`: the tag's output \
                         would complete it; write the whole escape (`\\uXXXX`) in the text"
                    ));
                }
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
