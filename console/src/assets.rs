//! The web app's files, built into the binary: nothing is fetched from a CDN or the internet
//! when the console runs. Plain ES modules and CSS, so there is no front-end build step.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/app.js"),
    },
    Asset {
        name: "pages.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/pages.js"),
    },
    Asset {
        name: "ui.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/ui.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../assets/app.css"),
    },
];

/// The app's one page; the routes after `#` are the app's.
#[utoipa::path(get, path = "/", security(()), responses(
    (status = 200, description = "The console's page", content_type = "text/html", body = String)))]
pub async fn index() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")],
        include_str!("../assets/index.html"),
    )
        .into_response()
}

/// One of the app's files (its scripts and stylesheet), built into the binary.
#[utoipa::path(get, path = "/assets/{name}", security(()),
    params(("name" = String, Path, description = "app.js, pages.js, ui.js or app.css")),
    responses(
        (status = 200, description = "The file", content(
            (String = "text/javascript"),
            (String = "text/css"),
        )),
        (status = 404, description = "No such file"),
    ))]
pub async fn asset(Path(name): Path<String>) -> Response {
    let Some(asset) = ASSETS.iter().find(|asset| asset.name == name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    // Revalidated on every load: the files are small and change with every release.
    ([(header::CONTENT_TYPE, asset.content_type), (header::CACHE_CONTROL, "no-cache")], asset.body)
        .into_response()
}
