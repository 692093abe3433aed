// The console's shell: the session, calls to the services through /api/{service}/…, the
// navigation and the routes after `#`.

import { el, setCurrencyDigits, toast } from "./ui.js";
import * as pages from "./pages.js";

export const session = { info: null };

// The answer of a call: `ok`, `status`, `data` (JSON when it is), `etag`, `problem`.
export async function api(service, path, options = {}) {
  return call(`/api/${service}/${path}`, options);
}

async function call(url, { method = "GET", body, headers = {}, raw = false } = {}) {
  const sent = { method, headers: { Accept: "application/json", ...headers }, credentials: "same-origin" };
  if (method !== "GET" && method !== "HEAD") {
    sent.headers["X-CSRF-Token"] = session.info?.csrf_token || "";
  }
  if (body !== undefined) {
    sent.headers["Content-Type"] = "application/json";
    sent.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, sent);
  } catch (error) {
    return { ok: false, status: 0, problem: { title: "The console cannot be reached", detail: String(error) } };
  }
  if (response.status === 401 && !url.startsWith("/session")) {
    session.info = null;
    showSignIn("Your session ended. Sign in again.");
    return { ok: false, status: 401, problem: { title: "Signed out" } };
  }
  const type = response.headers.get("content-type") || "";
  const answer = { ok: response.ok, status: response.status, etag: response.headers.get("etag") };
  if (raw) answer.blob = await response.blob();
  else if (type.includes("json")) answer.data = await response.json().catch(() => null);
  else answer.text = await response.text();
  if (!response.ok) {
    answer.problem =
      type.includes("problem+json") || type.includes("json")
        ? answer.data
        : { title: `${response.status}`, detail: answer.text };
  }
  return answer;
}

export function canWrite() {
  return session.info?.role === "admin";
}

// ------------------------------------------------------------------ partners, shared by pages

let partnerCache = null;

export async function partners(reload = false) {
  if (partnerCache && !reload) return partnerCache;
  const answer = await api("campaignex", "v1/partners");
  partnerCache = answer.ok ? answer.data.items : [];
  return partnerCache;
}

export function forgetPartners() {
  partnerCache = null;
}

// ------------------------------------------------------------------ sign-in and out

function showSignIn(message) {
  document.getElementById("top").hidden = true;
  pages.signIn(document.getElementById("main"), message, async (token) => {
    const answer = await call("/session", { method: "POST", body: { token } });
    if (!answer.ok) return answer.problem;
    session.info = answer.data;
    startApp();
    return null;
  });
}

async function signOut() {
  await call("/session", { method: "DELETE" });
  session.info = null;
  forgetPartners();
  location.hash = "#/overview";
  showSignIn("Signed out.");
}

// ------------------------------------------------------------------ routes

const ROUTES = [
  ["overview", "Overview", pages.overview],
  ["partners", "Partners", pages.partnersPage],
  ["rules", "Rules", pages.rules],
  ["uploads", "Uploads", pages.uploads],
  ["customers", "Customers", pages.customers],
  ["reports", "Reports", pages.reports],
  ["audit", "Audit", pages.audit],
];

function route() {
  const [name = "overview", ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  return { name, args: rest.map(decodeURIComponent) };
}

async function render() {
  if (!session.info) return;
  const { name, args } = route();
  const found = ROUTES.find(([route]) => route === name) || ROUTES[0];
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.route === found[0]) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const main = document.getElementById("main");
  document.title = `${found[1]} · Cezbek console`;
  main.replaceChildren(el("h1", { text: found[1] }));
  try {
    await found[2](main, args);
  } catch (error) {
    main.append(el("p", { class: "error", role: "alert", text: `This page failed: ${error}` }));
  }
}

function startApp() {
  const top = document.getElementById("top");
  top.hidden = false;
  document.getElementById("who").textContent = `${session.info.name} (${session.info.role})`;
  document
    .getElementById("nav")
    .replaceChildren(
      ...ROUTES.map(([route, label]) =>
        el("li", {}, el("a", { href: `#/${route}`, "data-route": route, text: label })),
      ),
    );
  document.body.classList.toggle("viewer", !canWrite());
  render();
}

export function go(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

window.addEventListener("hashchange", () => {
  render();
  document.getElementById("main").focus();
});

document.getElementById("sign-out").addEventListener("click", () => signOut().catch((error) => toast(String(error))));

(async () => {
  const digits = await call("/currencies");
  if (digits.ok) setCurrencyDigits(digits.data);
  const answer = await call("/session");
  if (answer.ok) {
    session.info = answer.data;
    startApp();
  } else {
    showSignIn();
  }
})();
