//! QR codes for Delta Chat: an inline SVG for the web pages and Unicode half blocks for
//! the terminal (`postern token create --qr`).
//!
//! ```text
//! DCACCOUNT:https://chat.example.org/new?token=abcd...   (an invite)
//! dclogin:alice@example.org?p=secret&v=1                 (a ready account)
//! ```
//!
//! The `qrcode` crate only computes the modules; drawing them is done here, so the SVG is
//! one small `<path>` that needs no external file, script or style sheet.

use std::fmt::Write as _;

use qrcode::{Color, EcLevel, QrCode};

/// Light modules around the code, as the QR specification asks.
const QUIET_ZONE: usize = 4;

/// The modules of `text`, row by row, with the quiet zone around them (`true` = dark).
/// `None` when the text is too long for any QR code.
fn modules(text: &str) -> Option<(usize, Vec<bool>)> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).ok()?;
    let inner = code.width();
    let colors = code.to_colors();
    let width = inner + 2 * QUIET_ZONE;
    let mut cells = vec![false; width * width];
    for y in 0..inner {
        for x in 0..inner {
            if colors.get(y * inner + x) == Some(&Color::Dark) {
                cells[(y + QUIET_ZONE) * width + x + QUIET_ZONE] = true;
            }
        }
    }
    Some((width, cells))
}

/// An `<svg>` element drawing `text` as a QR code, `size` CSS pixels wide, labelled for
/// screen readers with `label`. `None` when the text does not fit in a QR code.
pub fn svg(text: &str, size: u32, label: &str) -> Option<String> {
    let (width, cells) = modules(text)?;
    let mut path = String::new();
    for y in 0..width {
        let mut x = 0;
        while x < width {
            if cells[y * width + x] {
                let start = x;
                while x < width && cells[y * width + x] {
                    x += 1;
                }
                let _ = write!(path, "M{start} {y}h{}v1h-{}z", x - start, x - start);
            } else {
                x += 1;
            }
        }
    }
    Some(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"qr\" role=\"img\" aria-label=\"{}\" \
         width=\"{size}\" height=\"{size}\" viewBox=\"0 0 {width} {width}\" \
         shape-rendering=\"crispEdges\"><rect width=\"{width}\" height=\"{width}\" fill=\"#fff\"/>\
         <path fill=\"#000\" d=\"{path}\"/></svg>",
        escape_markup(label)
    ))
}

/// `text` as a QR code drawn with Unicode half blocks, two modules per character row,
/// for a terminal with a dark background: light modules (and the quiet zone) are drawn
/// as blocks, dark ones as blanks. Empty when the text does not fit in a QR code.
pub fn terminal_qr(text: &str) -> String {
    let Some((width, cells)) = modules(text) else {
        return String::new();
    };
    let dark = |x: usize, y: usize| y < width && cells[y * width + x];
    let mut out = String::new();
    for y in (0..width).step_by(2) {
        for x in 0..width {
            // Past the last row counts as light: it is drawn as part of the quiet zone.
            let upper_light = !dark(x, y);
            let lower_light = y + 1 >= width || !dark(x, y + 1);
            out.push(match (upper_light, lower_light) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        out.push('\n');
    }
    out
}

/// Escapes text for XML or HTML, in content and in quoted attribute values (the SVG here,
/// the autoconfig document).
pub fn escape_markup(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_is_one_inline_element_with_a_path() {
        let s = svg("DCACCOUNT:https://example.org/new", 240, "a \"QR\" <code>").expect("fits");
        assert!(s.starts_with("<svg "), "{s}");
        assert!(s.ends_with("</svg>"));
        assert!(s.contains("aria-label=\"a &quot;QR&quot; &lt;code&gt;\""));
        assert!(s.contains("<path fill=\"#000\" d=\"M"));
        // Version 3 (29 modules) plus the quiet zone on both sides.
        assert!(s.contains("viewBox=\"0 0 37 37\""), "{s}");
        assert!(svg(&"x".repeat(5000), 100, "too long").is_none());
    }

    #[test]
    fn terminal_rows_hold_two_module_rows_each() {
        let t = terminal_qr("dclogin:alice@example.org?p=x&v=1");
        let rows: Vec<&str> = t.lines().collect();
        let width = rows[0].chars().count();
        assert_eq!(rows.len(), width.div_ceil(2));
        assert!(rows.iter().all(|r| r.chars().count() == width));
        // The quiet zone is light: the first row is all full blocks.
        assert!(rows[0].chars().all(|c| c == '█'), "{}", rows[0]);
        assert!(t.contains(' ') || t.contains('▀') || t.contains('▄'));
        assert_eq!(terminal_qr(&"x".repeat(5000)), "");
    }
}
