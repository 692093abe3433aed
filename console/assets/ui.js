// Building blocks of the pages: elements without innerHTML (partner text is never markup),
// money and times in the partner's currency, locale and zone, tables, charts and forms that
// show each server validation error next to its field.

export function el(tag, attributes = {}, ...children) {
  const node = document.createElementNS(
    tag === "svg" || attributes.svg ? "http://www.w3.org/2000/svg" : "http://www.w3.org/1999/xhtml",
    tag,
  );
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false || name === "svg") continue;
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else if (name === "text") {
      node.textContent = value;
    } else if (name === "value" && "value" in node) {
      node.value = value;
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function svg(tag, attributes = {}, ...children) {
  return el(tag, { ...attributes, svg: true }, ...children);
}

// ------------------------------------------------------------------ money, numbers, times

// The locale a partner's customers read amounts in, by the partner's currency.
const LOCALES = {
  IDR: "id-ID",
  MYR: "ms-MY",
  SGD: "en-SG",
  PHP: "en-PH",
  THB: "th-TH",
  VND: "vi-VN",
  USD: "en-US",
  EUR: "de-DE",
  GBP: "en-GB",
  JPY: "ja-JP",
  INR: "en-US",
  AUD: "en-AU",
  CNY: "zh-CN",
  HKD: "zh-HK",
  KRW: "ko-KR",
  TWD: "zh-TW",
  BRL: "pt-BR",
  MXN: "es-MX",
};

export function localeOf(currency) {
  return LOCALES[currency] || "en-US";
}

// Digits after the decimal point of each currency's minor unit, as the services count money
// (GET /currencies: ISO 4217, IDR 2, JPY 0). Not the browser's own table, which may differ.
let currencyDigits = {};

export function setCurrencyDigits(digits) {
  currencyDigits = digits;
}

export function minorDigits(currency) {
  return currencyDigits[currency] ?? 2;
}

// Integer minor units → "Rp 3.588,82", exactly: the decimal is built from the integer as a
// string, never through a float.
export function money(minor, currency) {
  if (minor === null || minor === undefined) return "—";
  if (!currency) return integer(minor);
  const digits = minorDigits(currency);
  const negative = minor < 0;
  const units = BigInt(Math.abs(Number(minor)))
    .toString()
    .padStart(digits + 1, "0");
  const decimal = digits === 0 ? units : `${units.slice(0, -digits)}.${units.slice(-digits)}`;
  const format = new Intl.NumberFormat(localeOf(currency), {
    style: "currency",
    currency,
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
  return format.format(`${negative ? "-" : ""}${decimal}`);
}

export function integer(value, currency) {
  if (value === null || value === undefined) return "—";
  return new Intl.NumberFormat(localeOf(currency)).format(value);
}

export function percent(share, currency) {
  return new Intl.NumberFormat(localeOf(currency), { style: "percent", maximumFractionDigits: 1 }).format(share);
}

// A time in the partner's zone, with the zone shown ("7 Des 2026, 17.12 WIB").
export function dateTime(iso, zone, currency) {
  if (!iso) return "—";
  return new Intl.DateTimeFormat(localeOf(currency), {
    // Components rather than dateStyle/timeStyle, which cannot be combined with the zone's name.
    year: "numeric",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    timeZone: zone || "UTC",
    timeZoneName: "short",
  }).format(new Date(iso));
}

// Today's date (YYYY-MM-DD) in a zone, `daysAgo` days back.
export function localDay(zone, daysAgo = 0) {
  const at = new Date(Date.now() - daysAgo * 86400000);
  return new Intl.DateTimeFormat("en-CA", {
    timeZone: zone || "UTC",
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
  }).format(at);
}

export function plural(count, one, many) {
  return `${count} ${count === 1 ? one : many}`;
}

// ------------------------------------------------------------------ tables and charts

// columns: [{label, value: row => text|Node, numeric}]
export function table(caption, columns, rows, options = {}) {
  // A wide table scrolls in its own region, which keyboard users can reach to scroll.
  return el(
    "div",
    { class: "table-wrap", tabindex: "0", role: "region", "aria-label": caption },
    el(
      "table",
      { class: options.class || null },
      el("caption", { text: caption }),
      el(
        "thead",
        {},
        el(
          "tr",
          {},
          columns.map((column) => el("th", { scope: "col", class: column.numeric ? "num" : null, text: column.label })),
        ),
      ),
      el(
        "tbody",
        {},
        rows.length === 0
          ? el("tr", {}, el("td", { colspan: columns.length, class: "muted", text: options.empty || "Nothing yet." }))
          : rows.map((row) =>
              el(
                "tr",
                { class: options.rowClass ? options.rowClass(row) : null },
                columns.map((column) => el("td", { class: column.numeric ? "num" : null }, column.value(row))),
              ),
            ),
      ),
    ),
  );
}

// A bar chart of one or two series over labels, as SVG with a text alternative.
export function barChart(title, labels, series, format) {
  const width = 720,
    height = 220,
    left = 8,
    bottom = 28,
    top = 12;
  const max = Math.max(1, ...series.flatMap((s) => s.values.map((v) => Math.abs(v))));
  const slot = (width - left * 2) / Math.max(1, labels.length);
  // Thin bars for a month, but not a wall of colour for a single day.
  const barWidth = Math.min(48, Math.max(2, (slot - 4) / series.length));
  const bars = [];
  labels.forEach((label, index) => {
    series.forEach((s, which) => {
      const value = s.values[index] || 0;
      const barHeight = (Math.abs(value) / max) * (height - bottom - top);
      bars.push(
        svg(
          "rect",
          {
            x: left + index * slot + (slot - barWidth * series.length) / 2 + which * barWidth,
            y: height - bottom - barHeight,
            width: barWidth - 1,
            height: barHeight,
            class: `series-${which}`,
          },
          svg("title", { text: `${label} ${s.name}: ${format(value)}` }),
        ),
      );
    });
    if (labels.length <= 12 || index % Math.ceil(labels.length / 10) === 0) {
      bars.push(
        svg(
          "text",
          { x: left + index * slot + slot / 2, y: height - 8, "text-anchor": "middle", class: "axis" },
          label.slice(5),
        ),
      );
    }
  });
  const summary = series.map((s) => `${s.name}: ${format(s.values.reduce((a, b) => a + b, 0))} in all`).join("; ");
  return el(
    "figure",
    { class: "chart" },
    svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `${title}. ${summary}` }, bars),
    el(
      "figcaption",
      {},
      title,
      " ",
      series.map((s, which) => el("span", { class: `legend series-${which}` }, s.name)),
    ),
  );
}

export function progress(label, value, max) {
  const bar = el("progress", { value: value ?? null, max: max ?? null, "aria-label": label });
  if (value === null || value === undefined) bar.removeAttribute("value");
  return bar;
}

// ------------------------------------------------------------------ forms

let fieldCount = 0;

// A labelled control: `name` is the JSON path the server names in its errors.
export function field(label, name, control, hint) {
  const id = `f${++fieldCount}`;
  control.id = id;
  control.name = name;
  control.dataset.field = name;
  const error = el("p", { class: "field-error", id: `${id}-error`, hidden: true });
  const help = hint ? el("p", { class: "hint", id: `${id}-hint`, text: hint }) : null;
  if (help) control.setAttribute("aria-describedby", help.id);
  return el("div", { class: "field" }, el("label", { for: id, text: label }), control, help, error);
}

export function input(attributes = {}) {
  return el("input", { type: "text", ...attributes });
}

export function select(options, selected, attributes = {}) {
  return el(
    "select",
    attributes,
    options.map(([value, label]) => el("option", { value, selected: value === selected, text: label })),
  );
}

export function clearErrors(form) {
  for (const error of form.querySelectorAll(".field-error")) {
    error.hidden = true;
    error.textContent = "";
  }
  for (const control of form.querySelectorAll("[aria-invalid]")) control.removeAttribute("aria-invalid");
  const summary = form.querySelector(".form-errors");
  if (summary) summary.replaceChildren();
}

// Puts each error of a problem+json answer next to its field (the longest field name that
// prefixes the error's), and the rest, with the detail, at the top of the form.
export function showErrors(form, problem) {
  clearErrors(form);
  const controls = [...form.querySelectorAll("[data-field]")];
  const unplaced = [];
  let first = null;
  for (const error of problem.errors || []) {
    const control = controls
      .filter(
        (c) =>
          error.field === c.dataset.field ||
          error.field.startsWith(`${c.dataset.field}.`) ||
          error.field.startsWith(`${c.dataset.field}[`),
      )
      .sort((a, b) => b.dataset.field.length - a.dataset.field.length)[0];
    if (!control) {
      unplaced.push(`${error.field}: ${error.reason}`);
      continue;
    }
    const message = document.getElementById(`${control.id}-error`);
    message.textContent = message.textContent ? `${message.textContent}; ${error.reason}` : error.reason;
    message.hidden = false;
    control.setAttribute("aria-invalid", "true");
    control.setAttribute(
      "aria-describedby",
      [control.getAttribute("aria-describedby"), message.id].filter(Boolean).join(" "),
    );
    first = first || control;
  }
  const summary = form.querySelector(".form-errors");
  if (summary) {
    const lines = [problem.detail || problem.title, ...unplaced].filter(Boolean);
    summary.replaceChildren(...lines.map((line) => el("p", { text: line })));
  }
  (first || summary)?.focus?.();
}

export function toast(message) {
  const box = document.getElementById("toast");
  box.textContent = message;
  box.classList.add("shown");
  clearTimeout(box.timer);
  box.timer = setTimeout(() => box.classList.remove("shown"), 4000);
}

// A CSV download of rows, every cell that a spreadsheet would run as a formula made text.
export function downloadCsv(filename, header, rows) {
  const cell = (value) => {
    let text = value === null || value === undefined ? "" : String(value);
    if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`;
    return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
  };
  const lines = [header, ...rows].map((row) => row.map(cell).join(","));
  downloadBlob(filename, new Blob([`${lines.join("\n")}\n`], { type: "text/csv" }));
}

export function downloadBlob(filename, blob) {
  const url = URL.createObjectURL(blob);
  const link = el("a", { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
