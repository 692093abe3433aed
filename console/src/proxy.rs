//! The console changes and reads nothing itself: every page calls the services' own APIs
//! through `/api/{service}/…`, which forwards the request with the signed-in person's token.
//! Validation, `If-Match`, the audit trail and the viewer/admin split are therefore the same
//! as for curl; the console refuses a viewer's writes too, before they leave it.

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cezbek_platform::http::Problem;
use url::Url;

use crate::session::SignedIn;

/// The services the console speaks to, each at its API's base URL.
#[derive(Debug, Clone)]
pub struct Upstreams {
    pub campaignex: Url,
    pub informer: Url,
    pub ingestor: Url,
    pub payouts: Url,
}

impl Upstreams {
    fn base(&self, service: &str) -> Option<&Url> {
        match service {
            "campaignex" => Some(&self.campaignex),
            "informer" => Some(&self.informer),
            "ingestor" => Some(&self.ingestor),
            "payouts" => Some(&self.payouts),
            _ => None,
        }
    }
}

/// Request headers a page may send on to a service; everything else (cookies above all) stays.
const FORWARDED_REQUEST_HEADERS: [HeaderName; 3] =
    [header::CONTENT_TYPE, header::IF_MATCH, header::ACCEPT];
/// Response headers a page needs back.
const FORWARDED_RESPONSE_HEADERS: [HeaderName; 5] = [
    header::CONTENT_TYPE,
    header::ETAG,
    header::LOCATION,
    header::RETRY_AFTER,
    header::CONTENT_DISPOSITION,
];

/// One request a page made, to forward.
#[derive(Debug)]
pub struct Forward<'a> {
    pub service: &'a str,
    /// The path below the service's base, without the leading `/` (`v1/partners`).
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub method: Method,
    pub headers: &'a HeaderMap,
    pub body: Bytes,
    pub request_id: Option<&'a str>,
}

/// Where a forwarded request goes: the service's base joined with a `v1/…` path. Anything
/// that could step outside the API (`..`, empty segments, other roots) is refused.
pub fn target(
    upstreams: &Upstreams,
    service: &str,
    path: &str,
    query: Option<&str>,
) -> Result<Url, Problem> {
    let Some(base) = upstreams.base(service) else {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            format!("{service:?} is none of campaignex, informer, ingestor, payouts"),
        ));
    };
    let safe = path.starts_with("v1/")
        && path.split('/').all(|segment| !segment.is_empty() && segment != "." && segment != "..")
        && !path.contains(['\\', '?', '#']);
    if !safe {
        return Err(Problem::new(StatusCode::NOT_FOUND, format!("{path:?} is no API path")));
    }
    let mut url = base.clone();
    // Segment by segment: each is percent-encoded again (a `%2e%2e` stays a name, never `..`).
    url.path_segments_mut()
        .map_err(|()| Problem::new(StatusCode::NOT_FOUND, "the service's base URL takes no path"))?
        .pop_if_empty()
        .extend(path.split('/'));
    url.set_query(query.filter(|query| !query.is_empty()));
    Ok(url)
}

/// Whether a viewer may send this: reads, and the dry run of the rules (a POST that changes
/// nothing).
pub fn viewer_may(method: &Method, service: &str, path: &str) -> bool {
    if *method == Method::GET || *method == Method::HEAD {
        return true;
    }
    let segments: Vec<&str> = path.split('/').collect();
    *method == Method::POST
        && service == "campaignex"
        && matches!(segments.as_slice(), ["v1", "partners", _, "evaluate"])
}

pub async fn forward(
    client: &reqwest::Client,
    upstreams: &Upstreams,
    signed_in: &SignedIn,
    request: Forward<'_>,
) -> Result<Response, Problem> {
    if !signed_in.can_write() && !viewer_may(&request.method, request.service, request.path) {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            format!(
                "{} is a viewer: viewers can read everything and change nothing",
                signed_in.principal.name
            ),
        ));
    }
    let url = target(upstreams, request.service, request.path, request.query)?;
    let mut outgoing = client
        .request(request.method.clone(), url)
        .bearer_auth(&signed_in.token)
        .body(request.body);
    for name in FORWARDED_REQUEST_HEADERS {
        if let Some(value) = request.headers.get(&name) {
            outgoing = outgoing.header(name, value);
        }
    }
    if let Some(request_id) = request.request_id {
        outgoing = outgoing.header("x-request-id", request_id);
    }
    let answer = outgoing.send().await.map_err(|error| {
        tracing::warn!(service = request.service, %error, "a service did not answer the console");
        let status =
            if error.is_timeout() { StatusCode::GATEWAY_TIMEOUT } else { StatusCode::BAD_GATEWAY };
        Problem::new(status, format!("{} did not answer: {error}", request.service))
    })?;
    let status = answer.status();
    let mut headers = HeaderMap::new();
    for name in FORWARDED_RESPONSE_HEADERS {
        if let Some(value) = answer.headers().get(&name) {
            headers.insert(name, value.clone());
        }
    }
    let body = answer.bytes().await.map_err(|error| {
        Problem::new(
            StatusCode::BAD_GATEWAY,
            format!("{} broke off its answer: {error}", request.service),
        )
    })?;
    Ok((status, headers, body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstreams() -> Upstreams {
        let url = |raw: &str| Url::parse(raw).unwrap();
        Upstreams {
            campaignex: url("http://campaignex:8082"),
            informer: url("http://informer:8083/base/"),
            ingestor: url("http://ingestor:8081"),
            payouts: url("http://payouts:8086"),
        }
    }

    #[test]
    fn only_api_paths_of_known_services_are_forwarded() {
        let upstreams = upstreams();
        let url =
            target(&upstreams, "campaignex", "v1/partners/TOKO/campaigns", Some("a=1")).unwrap();
        assert_eq!(url.as_str(), "http://campaignex:8082/v1/partners/TOKO/campaigns?a=1");
        let url = target(&upstreams, "informer", "v1/partners/TOKO/reports/daily", None).unwrap();
        assert_eq!(url.as_str(), "http://informer:8083/base/v1/partners/TOKO/reports/daily");
        // An id that spells a dot segment in percent-encoding stays an id.
        let url =
            target(&upstreams, "informer", "v1/partners/TOKO/transactions/%2e%2e", None).unwrap();
        assert_eq!(
            url.as_str(),
            "http://informer:8083/base/v1/partners/TOKO/transactions/%252e%252e"
        );
        for (service, path) in [
            ("rewarder", "v1/x"),
            ("campaignex", "openapi.json"),
            ("campaignex", "v1/../metrics"),
            ("campaignex", "v1/partners/x/.."),
            ("campaignex", "v1//partners"),
            ("campaignex", "v1/partners\\..\\x"),
        ] {
            let refused = target(&upstreams, service, path, None).unwrap_err();
            assert_eq!(refused.status, 404, "{service} {path}");
        }
    }

    #[test]
    fn viewers_may_read_and_dry_run_only() {
        assert!(viewer_may(&Method::GET, "campaignex", "v1/partners"));
        assert!(viewer_may(&Method::POST, "campaignex", "v1/partners/TOKO/evaluate"));
        assert!(!viewer_may(&Method::POST, "campaignex", "v1/partners/TOKO/campaigns"));
        assert!(!viewer_may(&Method::POST, "informer", "v1/partners/TOKO/evaluate"));
        assert!(!viewer_may(&Method::PUT, "campaignex", "v1/partners/TOKO/evaluate"));
        assert!(!viewer_may(&Method::DELETE, "campaignex", "v1/partners/TOKO"));
        assert!(!viewer_may(&Method::POST, "ingestor", "v1/uploads"));
    }
}
