//! Handlebars body templates, compiled once at config load. Pure: no I/O.
//!
//! A template is [Handlebars](https://handlebarsjs.com/guide/) rendered against the event's
//! JSON, e.g. `{{ data.requester.email }}` or `{{ data.access_groups.[0].integration.name }}`.
//! Each [`Template`] owns its own registry, so `strict` is per webhook.
//!
//! # Escaping
//! A `{{ }}` value is escaped for a JSON string, never for HTML: `"` and `\` get a backslash,
//! control characters become `\n`, `\t`, `\u0001`…, and U+2028/U+2029 become `\u2028`/`\u2029`
//! (see [`escape_json_string`]). Quotes are not added: write them in the template,
//! `"email": "{{ data.requester.email }}"`.
//!
//! **A `{{ }}` inside a JSON string nested inside another JSON string is escaped for both.**
//! Logz.io-style bodies carry a JSON document inside a string:
//!
//! ```text
//! {"message": "{ \"justification\": \"{{ data.justification }}\" }", "type": "Apono"}
//! ```
//!
//! Here `{{ data.justification }}` is escaped twice (once for the inner string, once more for
//! the outer one), so the body is valid JSON, its `message` is valid JSON too, and the inner
//! `justification` is exactly the requester's text, whatever quotes, backslashes or newlines it
//! holds. The depth is read from the template's own text when it is compiled: a `"` opens or
//! closes a string of depth 1, `\"` one of depth 2, `\\\"` depth 3, `\\\\\\\"` depth 4 (a
//! quote of the current depth closes it, one of the next depth opens it, any other quote is
//! plain text; extra escaped backslashes `\\` in front of a quote do not change its depth).
//! So quoted text inside an ordinary string counts as a nested string too: in
//! `"said \"{{ x }}\""` the value is escaped twice.
//! A value at depth `d` is escaped `d` times; at depth 0 (outside any string) it is escaped
//! once, which leaves numbers and booleans as they are. Only the template's literal text
//! counts: quotes that come out of `{{ }}` tags do not.
//!
//! Because the depth is read from the text as written, [`Template::compile`] refuses whatever
//! would make the text say something else than it shows (each with its line and column):
//! - `\u0022` and `\u005c` (JSON escapes of `"` and `\`): write `\"` and `\\`;
//! - backslashes right before a tag that are not whole escapes at its depth (so they would
//!   escape the tag's first character), and an unfinished `\uXX` right before a tag;
//! - `{{{ }}}` and `{{& }}` inside a JSON string (outside strings they write the value raw,
//!   which is meant for values you control; use `json` for event data);
//! - a block (`{{#if}}`, `{{#each}}`, `{{#with}}`, `{{#unless}}`) with a branch that does not
//!   end at the depth it started at: keep each branch's quotes balanced;
//! - partials (`{{> }}`, `{{#> }}`), inline partials (`{{#*inline}}`) and decorators.
//!
//! Comments (quotes in them count for nothing), whitespace control (`{{~ }}`), standalone
//! tags and raw blocks (`{{{{raw}}}}…{{{{/raw}}}}`, read as the literal text they write) are
//! fine.
//!
//! # Values
//! A string renders as its text, a number as JSON prints it (`1764064800.123456`, `3600`), a
//! boolean as `true`/`false`, null as nothing; an object renders `[object]` and an array its
//! items in brackets, so use `json` for those. A path that does not exist renders nothing, or
//! is a render error when the webhook is `strict` (also when it is a helper's parameter, except
//! as the condition of `{{#if}}`/`{{#unless}}`). A path through a null (`data.access_bundle.id`
//! when `access_bundle` is null) does not exist. A name into an array
//! (`data.access_groups.integration`) is a render error even when not strict.
//!
//! # Helpers
//! - `{{json data.access_groups}}`: the value as compact JSON, written raw (`null` when it
//!   does not exist). For use outside strings: `"groups": {{json data.access_groups}}`. Inside
//!   a string it is escaped like any other value.
//! - `{{rfc3339 event_time}}`: epoch seconds (a number or numeric string) as RFC 3339 UTC with
//!   microseconds, `2025-11-25T10:00:00.123456Z` (later digits are truncated). Null or a missing
//!   value renders nothing; so does a value that is not epoch seconds between 0 and the end of
//!   year 9999, which is a render error instead when the webhook is `strict`.
//! - handlebars' built-ins: `if`, `unless`, `each`, `with`, `lookup`, `raw`, `log`, `eq`, `ne`,
//!   `gt`, `gte`, `lt`, `lte`, `and`, `or`, `not`, `len`. Any other helper is a compile error.
//!
//! # JSON bodies
//! With `json: true` the rendered body must parse as JSON or the render fails (the body is
//! never sent). A body that parses is returned exactly as rendered.

mod escape;
mod helpers;
mod nesting;
#[cfg(test)]
mod tests;

use handlebars::{Context, Handlebars, RenderErrorReason, TemplateError};

pub use escape::escape_json_string;

/// Name the compiled template is registered under in its registry.
const BODY: &str = "body";

/// An event prepared for rendering, built once per event (it takes the JSON by value, so
/// nothing is copied) and shared by the templates of every webhook it matched.
pub struct RenderInput(Context);

impl RenderInput {
    /// Prepares `event` for rendering.
    pub fn new(event: serde_json::Value) -> Self {
        RenderInput(Context::from(event))
    }
}

impl std::fmt::Debug for RenderInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RenderInput")
    }
}

/// A compiled body template for one webhook.
///
/// Holds its own Handlebars registry with the template already parsed and rewritten, so
/// [`Template::render`] does no parsing or registry work. It is `Send + Sync`: share it.
#[derive(Debug)]
pub struct Template {
    registry: Handlebars<'static>,
    options: TemplateOptions,
    analysis: nesting::Analysis,
}

/// How a template is compiled.
#[derive(Debug, Clone, Copy, Default)]
pub struct TemplateOptions {
    /// A `{{ }}` path that does not exist is an error instead of rendering empty.
    pub strict: bool,
    /// The body must parse as JSON (the webhook's Content-Type is JSON).
    pub json: bool,
}

/// A template that does not compile.
///
/// One line: `line L, column C: reason` when handlebars knows the position, else the reason.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CompileError(pub String);

/// A render that failed; the delivery is dead-lettered as `render_failed`.
///
/// One line, e.g. ``line 1, column 12: `data.x` is missing (strict mode)`` or
/// `body is not valid JSON: expected value at line 1 column 9`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RenderError(pub String);

impl Template {
    /// Compiles `source`: parses it, finds the JSON string depth of every `{{ }}`, rewrites
    /// nested ones to be escaped once per level, and checks that every helper exists.
    ///
    /// # Errors
    /// A [`CompileError`] when the source is not valid Handlebars, a block is not closed by
    /// its own name, a helper is not one of the known ones, or the source holds something the
    /// depth analysis cannot follow (see [Escaping](self#escaping)).
    pub fn compile(source: &str, options: TemplateOptions) -> Result<Template, CompileError> {
        let mut parsed = handlebars::Template::compile_with_name(source, BODY.to_owned())
            .map_err(compile_error)?;
        let analysis = nesting::analyse(&mut parsed).map_err(|problem| {
            CompileError(at_position(problem.line, problem.column, problem.message))
        })?;

        let mut registry = Handlebars::new();
        registry.set_strict_mode(options.strict);
        registry.register_escape_fn(escape_json_string);
        helpers::register(&mut registry);
        registry.register_template(BODY, parsed);

        Ok(Template {
            registry,
            options,
            analysis,
        })
    }

    /// Renders the body for one event.
    ///
    /// # Errors
    /// A [`RenderError`] for a missing path in strict mode, a helper error, a name used as an
    /// array index, and, with `json: true`, a body that does not parse as JSON.
    pub fn render(&self, event: &serde_json::Value) -> Result<String, RenderError> {
        self.render_input(&RenderInput::new(event.clone()))
    }

    /// [`Template::render`] for an event already prepared: the hot path, where one
    /// [`RenderInput`] serves every webhook the event matched.
    pub fn render_input(&self, input: &RenderInput) -> Result<String, RenderError> {
        let body = self
            .registry
            .render_with_context(BODY, &input.0)
            .map_err(render_error)?;
        if self.options.json
            && let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&body)
        {
            return Err(RenderError(format!("body is not valid JSON: {e}")));
        }
        Ok(body)
    }

    /// The event paths the template reads, as segments (`data.access_groups.[0].integration`
    /// is `["data", "access_groups", "0", "integration"]`), deduplicated, in order of first use.
    ///
    /// Covers `{{ }}`, `{{{ }}}`, helper parameters and hash values (also of block helpers such
    /// as `{{#each data.approvals}}`), through subexpressions. `@root.x` is listed as `x`.
    /// Left out, because they are not paths from the event's root: `this`, `@index` and other
    /// `@` variables, `../` paths, and paths inside an `#each` or `#with` body (they are
    /// relative to the current item).
    pub fn expressions(&self) -> Vec<Vec<String>> {
        self.analysis.paths.clone()
    }

    /// The options the template was compiled with.
    pub fn options(&self) -> TemplateOptions {
        self.options
    }
}

/// `line L, column C: message`, or `message` when the position is unknown.
fn at_position(line: Option<usize>, column: Option<usize>, message: String) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!("line {line}, column {column}: {message}"),
        _ => message,
    }
}

/// The message with its first letter lowercased and its whitespace runs (newlines included)
/// collapsed to single spaces.
fn one_line_lowercase(message: &str) -> String {
    let joined = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut chars = joined.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => joined,
    }
}

fn compile_error(e: TemplateError) -> CompileError {
    let reason = one_line_lowercase(&e.reason().to_string());
    let (line, column) = e.pos().unzip();
    CompileError(at_position(line, column, reason))
}

fn render_error(e: handlebars::RenderError) -> RenderError {
    let reason = match e.reason() {
        RenderErrorReason::MissingVariable(Some(path)) => {
            format!("`{path}` is missing (strict mode)")
        }
        RenderErrorReason::MissingVariable(None) => "a value is missing (strict mode)".to_owned(),
        other => one_line_lowercase(&other.to_string()),
    };
    RenderError(at_position(e.line_no, e.column_no, reason))
}
