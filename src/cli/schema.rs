//! `webhook-relay schema`: the event payload's JSON Schema, or with `--fields` the flat list of
//! template paths with their types and a sample value.

use super::output::{Table, plural, print_json, truncate};
use crate::model::event::{self, Trigger};

/// Options of `schema`.
#[derive(Debug, Clone, clap::Args)]
pub struct SchemaArgs {
    /// List the template paths instead of printing the schema.
    #[arg(long)]
    pub fields: bool,
}

#[derive(serde::Serialize)]
struct Field {
    path: String,
    #[serde(rename = "type")]
    ty: String,
    sample: serde_json::Value,
    description: String,
}

/// The sample event's value at a Handlebars path like `data.access_groups.[0].integration.name`.
pub fn sample_value(sample: &serde_json::Value, path: &str) -> serde_json::Value {
    let mut node = sample;
    for segment in path.split('.') {
        let segment = segment.trim_start_matches('[').trim_end_matches(']');
        let next = match segment.parse::<usize>() {
            Ok(i) => node.get(i),
            Err(_) => node.get(segment),
        };
        match next {
            Some(n) => node = n,
            None => return serde_json::Value::Null,
        }
    }
    node.clone()
}

/// Runs `schema`.
pub fn run(args: &SchemaArgs, json: bool) -> u8 {
    if !args.fields {
        print_json(event::json_schema());
        return super::EXIT_OK;
    }
    let sample = event::sample(Trigger::RequestApproved);
    let fields: Vec<Field> = event::field_paths()
        .into_iter()
        .map(|f| Field {
            sample: sample_value(&sample, &f.path),
            path: f.path,
            ty: f.ty,
            description: f.description,
        })
        .collect();
    if json {
        print_json(&fields);
        return super::EXIT_OK;
    }
    let mut table = Table::new(["PATH", "TYPE", "SAMPLE", "DESCRIPTION"]);
    for f in &fields {
        let sample = match &f.sample {
            serde_json::Value::Object(_) => "{…}".to_string(),
            serde_json::Value::Array(items) => format!("[{}]", plural(items.len(), "item")),
            serde_json::Value::Null => "".to_string(),
            other => truncate(&other.to_string(), 40),
        };
        table.row([
            f.path.clone(),
            f.ty.clone(),
            sample,
            truncate(&f.description, 70),
        ]);
    }
    print!("{}", table.render());
    println!(
        "\nUse a path in a template as {{{{ data.requester.email }}}}; array items as data.access_groups.[0].…"
    );
    super::EXIT_OK
}
