//! How commands print: aligned plain-text tables, colour only on a terminal (and never with
//! `NO_COLOR`), JSON with `--json`.

use std::io::IsTerminal;

/// Whether stdout gets colour.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    colour: bool,
}

impl Style {
    /// Colour when stdout is a terminal and `NO_COLOR` is unset.
    pub fn detect() -> Self {
        Style {
            colour: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    /// Never colour (tests, JSON).
    pub fn plain() -> Self {
        Style { colour: false }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// Green: success, active.
    pub fn good(&self, text: &str) -> String {
        self.paint("32", text)
    }

    /// Red: failure, error.
    pub fn bad(&self, text: &str) -> String {
        self.paint("31", text)
    }

    /// Yellow: warning.
    pub fn warn(&self, text: &str) -> String {
        self.paint("33", text)
    }

    /// Bold: headings.
    pub fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }

    /// Dim: secondary details.
    pub fn dim(&self, text: &str) -> String {
        self.paint("2", text)
    }
}

/// A plain-text table: a header row and rows, columns padded to their widest cell.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(header: I) -> Self {
        Table {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are empty.
    pub fn row<I: IntoIterator<Item = S>, S: Into<String>>(&mut self, cells: I) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// Whether it has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, each line ending in a newline; the last column is not padded.
    /// Widths count characters, and ANSI colour codes are not counted.
    pub fn render(&self) -> String {
        let columns = self.header.len();
        let mut widths = vec![0; columns];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(visible_width(cell));
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = row.get(i).map(String::as_str).unwrap_or("");
                line.push_str(cell);
                if i + 1 < columns {
                    let pad = width - visible_width(cell) + 2;
                    line.push_str(&" ".repeat(pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Characters shown, not counting ANSI escape sequences.
pub fn visible_width(text: &str) -> usize {
    let mut width = 0;
    let mut in_escape = false;
    for c in text.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => width += 1,
        }
    }
    width
}

/// `text` cut to `max` characters, with `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let mut cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// `1 webhook`, `2 webhooks`.
pub fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("error: cannot encode the output as JSON: {e}"),
    }
}

/// `text` made safe to print on a terminal: every character that is not printable is written
/// as an escape, so a dead letter cannot move the cursor, clear the screen, set the title,
/// rewrite the line (`\r`) or reorder text (bidirectional overrides).
///
/// Escaped: C0 controls (`\x1b`, `\r`, `\t`, …; `\n` too unless `keep_newlines`), DEL
/// (`\x7f`), C1 controls (`\u{9b}`, the one-byte CSI, …), and the invisible format and
/// separator characters (`\u{202e}`, `\u{200b}`, `\u{2028}`, `\u{feff}`, …). Everything else,
/// other scripts and emoji included, is kept; backslashes are kept as they are, so the escapes
/// are for reading, not for parsing back.
pub fn terminal_safe(text: &str, keep_newlines: bool) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let code = u32::from(c);
        match c {
            '\n' if keep_newlines => out.push('\n'),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            _ if code < 0x20 || code == 0x7f => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\x{code:02x}");
            }
            _ if (0x80..0xa0).contains(&code) || is_invisible_format(c) => {
                let _ = write!(out, "\\u{{{code:x}}}");
            }
            _ => out.push(c),
        }
    }
    out
}

/// Unicode format characters and separators a terminal draws as nothing (or acts on):
/// bidirectional marks, embeddings, overrides and isolates, the zero-width space, the line
/// and paragraph separators, the byte-order mark and the interlinear annotation marks. The
/// zero-width joiners (U+200C, U+200D) stay: emoji and other scripts are built with them.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}'
            | '\u{061c}'
            | '\u{180e}'
            | '\u{200b}'
            | '\u{200e}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns_and_ignores_colour_codes() {
        let mut table = Table::new(["", "NAME", "URL"]);
        table.row(["\x1b[32m●\x1b[0m", "logzio-audit", "https://h/?token=***"]);
        table.row(["○", "x", "https://other/"]);
        assert_eq!(
            table.render(),
            "   NAME          URL\n\
             \x1b[32m●\x1b[0m  logzio-audit  https://h/?token=***\n\
             ○  x             https://other/\n"
        );
    }

    #[test]
    fn truncation() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("a much longer text", 8), "a much …");
        assert_eq!(truncate("two\nlines", 20), "two lines");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            terminal_safe("a\x1b[2Jb\rc\td\u{7}e\u{0}\u{7f}", false),
            r"a\x1b[2Jb\rc\td\x07e\x00\x7f"
        );
        assert_eq!(terminal_safe("x\ny", false), r"x\ny");
        assert_eq!(terminal_safe("x\ny", true), "x\ny");
        // C1 controls, among them the one-character CSI and OSC.
        assert_eq!(
            terminal_safe("\u{9b}31m\u{9d}0;title\u{9c}\u{85}", true),
            r"\u{9b}31m\u{9d}0;title\u{9c}\u{85}"
        );
        // Invisible reordering and separators.
        assert_eq!(
            terminal_safe("ab\u{202e}cd\u{2066}\u{200b}\u{2028}\u{feff}", true),
            r"ab\u{202e}cd\u{2066}\u{200b}\u{2028}\u{feff}"
        );
    }

    #[test]
    fn printable_text_is_kept() {
        for text in [
            "plain ascii ~!@#$%^&*()_+{}|:\"<>?`-=[]\\;',./",
            "ünïcödé 日本語 עברית 🚀👩‍💻 \u{a0}nbsp",
            r"C:\path\x1b is text",
        ] {
            assert_eq!(terminal_safe(text, false), text);
        }
    }

    #[test]
    fn nothing_below_space_survives() {
        for code in (0u32..0x20).chain([0x7f]).chain(0x80..0xa0) {
            let c = char::from_u32(code).unwrap();
            let out = terminal_safe(&format!("a{c}b"), false);
            assert!(
                out.chars().all(|c| u32::from(c) >= 0x20
                    && u32::from(c) != 0x7f
                    && !(0x80..0xa0).contains(&u32::from(c))),
                "{code:#x}: {out:?}"
            );
        }
    }
}
