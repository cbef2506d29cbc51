//! Browsers are not clients of the admin API. A page the operator opens anywhere can make
//! the browser send requests to loopback: a form posted to another site needs no
//! permission (a plugin's method called, a rescan started), and a name the page's site
//! rebinds to 127.0.0.1 lets it read the answers too. Programs (`curl`, `plugin-host
//! status`, Prometheus, probes) send no `Origin` and name the address they connect to.
//!
//! So the API refuses a request a browser made for a page of another origin (its
//! `Origin` is not the address asked for, or `Sec-Fetch-Site` says `cross-site`), and,
//! when no token is set (loopback only), every request whose `Host` is a name other than
//! `localhost` or a loopback address: a rebound page's `GET` carries no `Origin`, so only
//! the name it asks for tells it from a program's (it would read what `/metrics` and
//! `/plugins` show). A proxy in front that passes on its own name needs a token, as
//! everything beyond loopback does. A request that names no host at all (HTTP/1.0) is not
//! a browser's and is served. With a token, a page cannot send it, and the token refuses
//! such requests already.

use std::{net::IpAddr, sync::atomic::Ordering, sync::Arc};

use axum::{
    extract::{Request, State},
    http::{header, HeaderMap, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{AdminState, ApiError};

/// Refuses what a browser asked for on another site's behalf; passes the rest on.
pub(crate) async fn refuse_other_sites(
    State(state): State<Arc<AdminState>>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    if let Some(why) = cross_origin(headers) {
        state
            .connections
            .cross_origin
            .fetch_add(1, Ordering::Relaxed);
        return refusal("cross_origin", &why);
    }
    if state.token.is_none() {
        if let Some(why) = foreign_host(headers) {
            state
                .connections
                .foreign_host
                .fetch_add(1, Ordering::Relaxed);
            return refusal("foreign_host", &why);
        }
    }
    next.run(request).await
}

fn refusal(kind: &str, why: &str) -> Response {
    ApiError::new(StatusCode::FORBIDDEN, kind, why).into_response()
}

fn text<'a>(headers: &'a HeaderMap, name: &header::HeaderName) -> Option<&'a str> {
    headers
        .get(name)
        .map(|v| v.to_str().unwrap_or("(not text)"))
}

/// Why the request came from a page of another origin, if it did.
fn cross_origin(headers: &HeaderMap) -> Option<String> {
    let host = text(headers, &header::HOST).unwrap_or_default();
    if let Some(origin) = text(headers, &header::ORIGIN) {
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        if !authority.is_some_and(|a| a.eq_ignore_ascii_case(host)) {
            return Some(format!(
                "a browser sent this for a page of {origin}, not of {host}; the admin API \
                 serves programs, not other sites' pages"
            ));
        }
    }
    let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    (site == Some("cross-site")).then(|| {
        "a browser sent this for a page of another site (Sec-Fetch-Site: cross-site); the \
         admin API serves programs, not other sites' pages"
            .to_owned()
    })
}

/// Why the `Host` a request names is not this loopback server's, if it is not: a name
/// other than `localhost` that resolved to loopback (rebound by a page's site, or a
/// proxy's own). A request that names none is a program's.
fn foreign_host(headers: &HeaderMap) -> Option<String> {
    let host = text(headers, &header::HOST)?;
    let name = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let loopback = name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    (!loopback).then(|| {
        format!(
            "this request is addressed to {host}, not to this server's loopback address, \
             and without admin.token the API answers only requests for 127.0.0.1, [::1] or \
             localhost (a web page whose name was rebound to 127.0.0.1 names its own); ask \
             for one of those, or set admin.token (a proxy in front that passes on its own \
             name needs one)"
        )
    })
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue};

    use super::{cross_origin, foreign_host};

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (name.parse().expect("name"), HeaderValue::from_static(value)))
            .collect()
    }

    #[test]
    fn a_page_of_another_origin_is_refused_and_programs_are_not() {
        let host = ("host", "127.0.0.1:9090");
        assert_eq!(cross_origin(&headers(&[host])), None);
        let same = headers(&[host, ("origin", "http://127.0.0.1:9090")]);
        assert_eq!(cross_origin(&same), None);
        for origin in ["http://evil.example", "http://127.0.0.1:3000", "null"] {
            let other = headers(&[host, ("origin", origin)]);
            assert!(cross_origin(&other).is_some(), "{origin}");
        }
        let fetched = headers(&[host, ("sec-fetch-site", "cross-site")]);
        assert!(cross_origin(&fetched).is_some());
    }

    #[test]
    fn only_loopback_names_are_this_servers_own() {
        for host in [
            "127.0.0.1:9090",
            "127.0.0.2",
            "localhost:9090",
            "LOCALHOST",
            "[::1]:9090",
        ] {
            assert_eq!(foreign_host(&headers(&[("host", host)])), None, "{host}");
        }
        for host in ["evil.example:9090", "10.0.0.5:9090", "[fe80::1]:9090", "x"] {
            assert!(
                foreign_host(&headers(&[("host", host)])).is_some(),
                "{host}"
            );
        }
        assert_eq!(
            foreign_host(&HeaderMap::new()),
            None,
            "HTTP/1.0 names no host"
        );
    }
}
