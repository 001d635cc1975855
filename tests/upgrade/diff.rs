//! A readable difference between two captures: for each item that differs,
//! the lines only on the left (-) and only on the right (+), in order, a
//! changed line next to the line that replaced it.

use std::collections::BTreeMap;

/// Lines of text by item (a question, a table, a catalog object).
pub type Lines = BTreeMap<String, Vec<String>>;

/// Changed lines shown per item, and items shown, before the rest is counted only.
const LINES_SHOWN: usize = 24;
const ITEMS_SHOWN: usize = 40;

/// None when `left` and `right` are the same; otherwise the difference,
/// headed by the two sides' names.
pub fn diff(left_name: &str, right_name: &str, left: &Lines, right: &Lines) -> Option<String> {
    let mut items = Vec::new();
    for (item, lines) in left {
        match right.get(item) {
            None => items.push(format!("@@ {item}: only in {left_name}")),
            Some(other) if other != lines => {
                let mut out = format!("@@ {item}");
                let changes = line_changes(lines, other);
                for line in changes.iter().take(LINES_SHOWN) {
                    out.push('\n');
                    out.push_str(line);
                }
                if changes.len() > LINES_SHOWN {
                    out.push_str(&format!(
                        "\n  ... and {} more changed lines",
                        changes.len() - LINES_SHOWN
                    ));
                }
                items.push(out);
            }
            Some(_) => {}
        }
    }
    for item in right.keys().filter(|item| !left.contains_key(*item)) {
        items.push(format!("@@ {item}: only in {right_name}"));
    }
    if items.is_empty() {
        return None;
    }
    let mut out = format!(
        "--- {left_name}\n+++ {right_name}\n{} items differ\n",
        items.len()
    );
    for item in items.iter().take(ITEMS_SHOWN) {
        out.push_str(item);
        out.push('\n');
    }
    if items.len() > ITEMS_SHOWN {
        out.push_str(&format!(
            "... and {} more items\n",
            items.len() - ITEMS_SHOWN
        ));
    }
    Some(out)
}

/// The lines to delete from `a` (-) and to insert (+) to make `b`, from a
/// longest common subsequence of the differing middle; when that is too big
/// to compute, the lines missing on each side.
fn line_changes(a: &[String], b: &[String]) -> Vec<String> {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (a, b) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    if a.len() * b.len() > 4_000_000 {
        let mut out: Vec<String> = a
            .iter()
            .filter(|l| !b.contains(l))
            .map(|l| format!("- {l}"))
            .collect();
        out.extend(
            b.iter()
                .filter(|l| !a.contains(l))
                .map(|l| format!("+ {l}")),
        );
        if out.is_empty() {
            out.push("  (the same lines in another order)".to_string());
        }
        return out;
    }
    // lcs[i][j]: length of a longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    // Each run of changes between common lines is shown as pairs of a line
    // and the line that took its place, then what is left over.
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    let (mut gone, mut came): (Vec<&String>, Vec<&String>) = (Vec::new(), Vec::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            flush(&mut out, &mut gone, &mut came);
            i += 1;
            j += 1;
        } else if j == b.len() || (i < a.len() && lcs[i + 1][j] >= lcs[i][j + 1]) {
            gone.push(&a[i]);
            i += 1;
        } else {
            came.push(&b[j]);
            j += 1;
        }
    }
    flush(&mut out, &mut gone, &mut came);
    out
}

fn flush(out: &mut Vec<String>, gone: &mut Vec<&String>, came: &mut Vec<&String>) {
    for k in 0..gone.len().max(came.len()) {
        if let Some(line) = gone.get(k) {
            out.push(format!("- {line}"));
        }
        if let Some(line) = came.get(k) {
            out.push(format!("+ {line}"));
        }
    }
    gone.clear();
    came.clear();
}
