//! `GET /api`: the description as one HTML page, rendered here from the
//! same document: no script, no CDN, nothing fetched elsewhere, every text
//! escaped.

use super::operations;
use std::fmt::Write as _;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{ApiKey, SecurityScheme};
use utoipa::openapi::{RefOr, Required};

/// HTML-escapes `text`.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
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

/// Escaped text with its `code` spans (between backticks) marked up, and
/// its blank-line-separated paragraphs as `<p>`.
fn prose(text: &str) -> String {
    let mut out = String::new();
    for para in text.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
        out.push_str("<p>");
        out.push_str(&inline(para));
        out.push_str("</p>");
    }
    out
}

/// Escaped text with its `code` spans marked up.
pub(super) fn inline(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{}</code>", escape(part));
        } else {
            out.push_str(&escape(part));
        }
    }
    out
}

/// An anchor name for an operation.
fn anchor(method: &str, path: &str) -> String {
    let mut id = method.to_ascii_lowercase();
    for c in path.chars() {
        id.push(if c.is_ascii_alphanumeric() { c } else { '-' });
    }
    id
}

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;max-width:62rem;margin:2rem auto;\
padding:0 1rem;color:#1b1b1b}code{font:13px ui-monospace,monospace;background:#f2f2f2;\
padding:0 .2em;border-radius:3px}table{border-collapse:collapse;width:100%;margin:.5rem 0 1rem}\
th,td{border:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}\
th{background:#f7f7f7}section{border-top:2px solid #ccc;margin-top:2rem}\
h3 code{font-size:15px}.m{font-weight:700}";

/// The page: every endpoint with its parameters, answers and headers.
pub(super) fn render(doc: &utoipa::openapi::OpenApi) -> String {
    let mut html = String::new();
    let title = &doc.info.title;
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} API</title><style>{STYLE}</style></head><body>\
         <h1>{} API <small>{}</small></h1>",
        escape(title),
        escape(title),
        escape(&doc.info.version),
    );
    if let Some(description) = &doc.info.description {
        html.push_str(&prose(description));
    }
    html.push_str(
        "<p>The same, machine-readable: <a href=\"/api/openapi.json\"><code>/api/openapi.json\
         </code></a> (OpenAPI 3.1).</p>",
    );

    html.push_str("<h2>Endpoints</h2><table><tr><th>method</th><th>path</th><th>what</th><th>statuses</th></tr>");
    for (path, item) in doc.paths.paths.iter() {
        for (method, op) in operations(item) {
            let statuses: Vec<&str> = op.responses.responses.keys().map(String::as_str).collect();
            let _ = write!(
                html,
                "<tr><td class=\"m\">{method}</td><td><a href=\"#{}\"><code>{}</code></a></td>\
                 <td>{}</td><td>{}</td></tr>",
                anchor(method, path),
                escape(path),
                inline(op.summary.as_deref().unwrap_or("")),
                escape(&statuses.join(", ")),
            );
        }
    }
    html.push_str("</table>");

    if let Some(components) = &doc.components {
        if !components.security_schemes.is_empty() {
            html.push_str("<h2>API keys</h2><ul>");
            for (name, scheme) in &components.security_schemes {
                let (how, description) = match scheme {
                    SecurityScheme::ApiKey(
                        ApiKey::Header(v) | ApiKey::Query(v) | ApiKey::Cookie(v),
                    ) => (format!("`{}` header", v.name), v.description.clone()),
                    SecurityScheme::Http(h) => (
                        "`Authorization: Bearer …`".to_owned(),
                        h.description.clone(),
                    ),
                    _ => (name.clone(), None),
                };
                let _ = write!(
                    html,
                    "<li><b>{}</b> ({}): {}</li>",
                    escape(name),
                    inline(&how),
                    inline(description.as_deref().unwrap_or("")),
                );
            }
            html.push_str("</ul>");
        }
    }

    for (path, item) in doc.paths.paths.iter() {
        for (method, op) in operations(item) {
            render_operation(&mut html, method, path, op);
        }
    }
    html.push_str("</body></html>\n");
    html
}

fn render_operation(html: &mut String, method: &str, path: &str, op: &Operation) {
    let _ = write!(
        html,
        "<section id=\"{}\"><h3><code>{method} {}</code> {}</h3>",
        anchor(method, path),
        escape(path),
        inline(op.summary.as_deref().unwrap_or("")),
    );
    if let Some(description) = &op.description {
        html.push_str(&prose(description));
    }
    if let Some(security) = &op.security {
        if !security.is_empty() {
            html.push_str(
                "<p>API key: optional by default (<code>X-API-Key</code> or \
                 <code>Authorization: Bearer</code>); see API keys above.</p>",
            );
        }
    }
    if let Some(params) = op.parameters.as_ref().filter(|p| !p.is_empty()) {
        html.push_str(
            "<h4>Parameters</h4><table><tr><th>name</th><th>in</th><th>required</th>\
             <th>meaning</th></tr>",
        );
        for p in params {
            let place = match p.parameter_in {
                ParameterIn::Path => "path",
                ParameterIn::Query => "query",
                ParameterIn::Header => "header",
                ParameterIn::Cookie => "cookie",
            };
            let required = if matches!(p.required, Required::True) {
                "yes"
            } else {
                "no"
            };
            let _ = write!(
                html,
                "<tr><td><code>{}</code></td><td>{place}</td><td>{required}</td><td>{}</td></tr>",
                escape(&p.name),
                inline(p.description.as_deref().unwrap_or("")),
            );
        }
        html.push_str("</table>");
    }
    if let Some(body) = &op.request_body {
        let types: Vec<String> = body
            .content
            .keys()
            .map(|t| format!("<code>{}</code>", escape(t)))
            .collect();
        let _ = write!(
            html,
            "<h4>Request body</h4><p>{} {}</p>",
            types.join(", "),
            inline(body.description.as_deref().unwrap_or("")),
        );
    }
    html.push_str(
        "<h4>Answers</h4><table><tr><th>status</th><th>meaning</th><th>content</th>\
         <th>headers</th></tr>",
    );
    for (status, response) in &op.responses.responses {
        let RefOr::T(response) = response else {
            continue;
        };
        let types: Vec<String> = response
            .content
            .keys()
            .map(|t| format!("<code>{}</code>", escape(t)))
            .collect();
        let headers: Vec<String> = response
            .headers
            .iter()
            .map(|(name, h)| {
                format!(
                    "<code title=\"{}\">{}</code>",
                    escape(h.description.as_deref().unwrap_or("")),
                    escape(name)
                )
            })
            .collect();
        let _ = write!(
            html,
            "<tr><td><b>{}</b></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(status),
            inline(&response.description),
            types.join(", "),
            headers.join(" "),
        );
    }
    html.push_str("</table></section>");
}
