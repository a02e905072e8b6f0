//! Handlebars body templates, compiled once at config load. Pure: no I/O.

/// A compiled body template for one webhook.
#[derive(Debug)]
pub struct Template {}

/// How a template is compiled.
#[derive(Debug, Clone, Copy, Default)]
pub struct TemplateOptions {
    /// A `{{ }}` path that does not exist is an error instead of rendering empty.
    pub strict: bool,
    /// The body must parse as JSON (the webhook's Content-Type is JSON).
    pub json: bool,
}

/// A template that does not compile.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CompileError(pub String);

/// A render that failed; the delivery is dead-lettered as `render_failed`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RenderError(pub String);

impl Template {
    /// Compiles `source`.
    pub fn compile(_source: &str, _options: TemplateOptions) -> Result<Template, CompileError> {
        todo!()
    }

    /// Renders the body for one event.
    pub fn render(&self, _event: &serde_json::Value) -> Result<String, RenderError> {
        todo!()
    }
}
