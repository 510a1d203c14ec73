//! The Prometheus text format (0.0.4) from prometheus-client's OpenMetrics
//! text, for scrapers and linters that do not ask for OpenMetrics
//! (`promtool check metrics`, `curl`, older agents).
//!
//! The formats differ in what matters here only: a counter family `x` is
//! described as `x_total` (its samples' name) in the text format, there is
//! no `# UNIT` or `# EOF` line, HELP escapes only `\\` and `\n`, and the
//! OpenMetrics-only types become `untyped`.

use std::collections::BTreeMap;

/// Content type of the Prometheus text format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `openmetrics` (as prometheus-client encodes it) in the text format.
pub fn openmetrics_to_text(openmetrics: &str) -> String {
    let types: BTreeMap<&str, &str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .collect();
    let counter = |name: &str| types.get(name) == Some(&"counter");
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            let name = family_name(name, counter(name));
            out.push_str(&format!("# HELP {name} {}\n", help_text(help)));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let kind = match kind {
                "counter" | "gauge" | "histogram" | "summary" => kind,
                _ => "untyped",
            };
            let name = family_name(name, kind == "counter");
            out.push_str(&format!("# TYPE {name} {kind}\n"));
        } else if is_created_of_counter(line, &counter) {
            // `_created` has no place in the text format.
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn family_name(name: &str, counter: bool) -> String {
    if counter && !name.ends_with("_total") {
        format!("{name}_total")
    } else {
        name.to_string()
    }
}

/// OpenMetrics escapes `"` in HELP; the text format knows only `\\` and `\n`.
fn help_text(help: &str) -> String {
    help.replace("\\\"", "\"")
}

fn is_created_of_counter(line: &str, counter: &impl Fn(&str) -> bool) -> bool {
    let name = line.split(['{', ' ']).next().unwrap_or("");
    name.strip_suffix("_created").is_some_and(counter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_take_their_total_name_and_openmetrics_only_lines_go() {
        let om = "# HELP hami_x_requests Requests by \\\"verb\\\".\n\
                  # TYPE hami_x_requests counter\n\
                  hami_x_requests_total{verb=\"get\"} 3\n\
                  hami_x_requests_created{verb=\"get\"} 1700000000.0\n\
                  # HELP hami_x_latency_seconds Latency.\n\
                  # TYPE hami_x_latency_seconds histogram\n\
                  # UNIT hami_x_latency_seconds seconds\n\
                  hami_x_latency_seconds_sum 0.5\n\
                  hami_x_latency_seconds_count 1\n\
                  hami_x_latency_seconds_bucket{le=\"+Inf\"} 1\n\
                  # HELP hami_x_up Up.\n\
                  # TYPE hami_x_up gauge\n\
                  hami_x_up 1\n\
                  # HELP hami_x_info Build.\n\
                  # TYPE hami_x_info info\n\
                  # EOF\n";
        let text = openmetrics_to_text(om);
        assert_eq!(
            text,
            "# HELP hami_x_requests_total Requests by \"verb\".\n\
             # TYPE hami_x_requests_total counter\n\
             hami_x_requests_total{verb=\"get\"} 3\n\
             # HELP hami_x_latency_seconds Latency.\n\
             # TYPE hami_x_latency_seconds histogram\n\
             hami_x_latency_seconds_sum 0.5\n\
             hami_x_latency_seconds_count 1\n\
             hami_x_latency_seconds_bucket{le=\"+Inf\"} 1\n\
             # HELP hami_x_up Up.\n\
             # TYPE hami_x_up gauge\n\
             hami_x_up 1\n\
             # HELP hami_x_info Build.\n\
             # TYPE hami_x_info untyped\n"
        );
    }
}
