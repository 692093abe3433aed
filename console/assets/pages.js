// The console's pages. Each reads and writes only through the services' APIs (api()), so
// what a page can do is exactly what the signed-in token may do.

import { api, canWrite, forgetPartners, go, partners } from "./app.js";
import {
  barChart,
  clearErrors,
  dateTime,
  downloadBlob,
  downloadCsv,
  el,
  field,
  input,
  integer,
  localDay,
  money,
  percent,
  plural,
  progress,
  select,
  showErrors,
  table,
  toast,
} from "./ui.js";

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function section(title, ...children) {
  return el("section", { "aria-labelledby": null }, el("h2", { text: title }), ...children);
}

function problemText(problem) {
  if (!problem) return "failed";
  const fields = (problem.errors || []).map((e) => `${e.field}: ${e.reason}`).join("; ");
  return [problem.detail || problem.title, fields].filter(Boolean).join(" — ");
}

function alertBox(text) {
  return el("p", { class: "error", role: "alert", text });
}

// A partner picker that keeps the choice in the route (`#/page/PARTNER`).
async function partnerPicker(page, chosen) {
  const list = await partners();
  const code = chosen && list.some((p) => p.code === chosen) ? chosen : list[0]?.code;
  const picker = select(
    list.map((p) => [p.code, `${p.code}${p.name ? ` — ${p.name}` : ""}`]),
    code,
  );
  picker.addEventListener("change", () => go(`#/${page}/${encodeURIComponent(picker.value)}`));
  return { partner: list.find((p) => p.code === code), picker: field("Partner", "partner", picker) };
}

// ------------------------------------------------------------------ sign-in

export function signIn(main, message, submit) {
  const token = input({ type: "password", autocomplete: "current-password", required: true });
  const form = el(
    "form",
    { class: "card narrow", "aria-labelledby": "sign-in-title" },
    el("h1", { id: "sign-in-title", text: "Sign in to the Cezbek console" }),
    message ? el("p", { class: "muted", role: "status", text: message }) : null,
    el("div", { class: "form-errors", tabindex: "-1" }),
    field("Admin or viewer token", "token", token, "The token your administrator gave you; it stays on the server."),
    el("button", { type: "submit", class: "primary", text: "Sign in" }),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const problem = await submit(token.value);
    if (problem)
      showErrors(form, { ...problem, errors: [{ field: "token", reason: problem.detail || "not accepted" }] });
  });
  main.replaceChildren(form);
  token.focus();
}

// ------------------------------------------------------------------ overview

export async function overview(main, args) {
  const health = el("div", {}, el("p", { class: "muted", text: "Asking the services…" }));
  const today = el("div", {}, el("p", { class: "muted", text: "Reading today's figures…" }));
  const chart = el("div");
  main.append(
    section("Pipeline health", health),
    section("Today per partner", today),
    section("The last 30 days", chart),
  );

  const showHealth = async () => {
    const answer = await fetch("/health", { credentials: "same-origin" })
      .then((r) => r.json())
      .catch(() => null);
    if (!answer) {
      health.replaceChildren(alertBox("The console cannot read the services' health."));
      return;
    }
    health.replaceChildren(
      el(
        "ul",
        { class: "stats" },
        el(
          "li",
          {},
          el("span", { class: "stat", text: answer.consumer_lag ?? "—" }),
          " transactions waiting (consumer lag)",
        ),
        el("li", {}, el("span", { class: "stat", text: answer.dead_lettered ?? "—" }), " dead-lettered"),
        el("li", {}, el("span", { class: "stat", text: answer.files_active ?? "—" }), " files being ingested"),
      ),
      table(
        "Services",
        [
          { label: "Service", value: (s) => s.service },
          {
            label: "Ready",
            value: (s) => el("span", { class: s.ready ? "ok" : "bad", text: s.ready ? "ready" : "not ready" }),
          },
          { label: "Detail", value: (s) => s.detail },
        ],
        answer.services,
      ),
    );
  };
  const list = await partners();
  const showToday = async () => {
    const rows = await Promise.all(
      list.map(async (partner) => {
        const day = localDay(partner.time_zone);
        const answer = await api("informer", `v1/partners/${partner.code}/reports/days?from=${day}&to=${day}`);
        return { partner, day, report: answer.ok ? answer.data.days[0] : null };
      }),
    );
    today.replaceChildren(
      table(
        "Today, in each partner's own day",
        [
          { label: "Partner", value: (r) => r.partner.code },
          { label: "Day", value: (r) => `${r.day} (${r.partner.time_zone})` },
          {
            label: "Transactions",
            numeric: true,
            value: (r) => integer(r.report?.totals.transactions, r.partner.currency),
          },
          { label: "Cashback", numeric: true, value: (r) => money(r.report?.totals.cashback, r.partner.currency) },
          { label: "Clawbacks", numeric: true, value: (r) => money(r.report?.totals.clawback, r.partner.currency) },
          { label: "Excluded", numeric: true, value: (r) => excludedShare(r.report, r.partner.currency) },
        ],
        rows,
      ),
    );
  };
  const { partner, picker } = await partnerPicker("overview", args[0]);
  const showChart = async () => {
    if (!partner) {
      chart.replaceChildren(el("p", { class: "muted", text: "No partners yet." }));
      return;
    }
    // One request: the informer sums the month where the rewards are.
    const from = localDay(partner.time_zone, 29);
    const to = localDay(partner.time_zone);
    const answer = await api("informer", `v1/partners/${partner.code}/reports/days?from=${from}&to=${to}`);
    if (!answer.ok) {
      chart.replaceChildren(picker, alertBox(problemText(answer.problem)));
      return;
    }
    const days = answer.data.days;
    chart.replaceChildren(
      picker,
      barChart(
        `Cashback and clawbacks per day, ${partner.code}`,
        days.map((d) => d.date),
        [
          { name: "cashback", values: days.map((d) => d.totals.cashback) },
          { name: "clawbacks", values: days.map((d) => d.totals.clawback) },
        ],
        (v) => money(v, partner.currency),
      ),
    );
  };
  await Promise.all([showHealth(), showToday(), showChart()]);
}

// Purchases an exclusion kept from earning, as a share of the day's purchases.
function excludedShare(report, currency) {
  if (!report || !report.totals.purchases) return "—";
  return percent(report.totals.excluded / report.totals.purchases, currency);
}

// ------------------------------------------------------------------ partners

export async function partnersPage(main) {
  const list = await partners(true);
  const created = el("div");
  main.append(created);
  const actions = (partner) => {
    if (!canWrite()) return "—";
    const rotate = el("button", {
      type: "button",
      text: "Rotate key",
      onclick: async () => {
        const answer = await api("campaignex", `v1/partners/${partner.code}/keys`, { method: "POST", body: {} });
        if (!answer.ok) {
          toast(problemText(answer.problem));
          return;
        }
        showSecret(created, answer.data, "A new signing key");
      },
    });
    const suspended = partner.status === "SUSPENDED";
    const toggle = el("button", {
      type: "button",
      text: suspended ? "Reactivate" : "Suspend",
      onclick: async () => {
        const answer = await api("campaignex", `v1/partners/${partner.code}/${suspended ? "reactivate" : "suspend"}`, {
          method: "POST",
        });
        if (!answer.ok) {
          toast(problemText(answer.problem));
          return;
        }
        forgetPartners();
        toast(`${partner.code} ${suspended ? "reactivated" : "suspended"}`);
        go("#/partners");
      },
    });
    const policy = el("button", {
      type: "button",
      text: "Payout policy",
      onclick: () => payoutPolicy(created, partner),
    });
    return el("div", { class: "actions" }, rotate, toggle, policy);
  };
  main.append(
    section(
      "Partners",
      table(
        "Partners",
        [
          { label: "Code", value: (p) => p.code },
          { label: "Name", value: (p) => p.name || "" },
          { label: "Currency", value: (p) => p.currency },
          { label: "Time zone", value: (p) => p.time_zone },
          { label: "Status", value: (p) => p.status },
          {
            label: "Payouts",
            value: (p) =>
              p.payout_policy
                ? `hold ${p.payout_policy.hold_days} d, min ${money(p.payout_policy.minimum, p.currency)}`
                : "not paid out",
          },
          { label: "Actions", value: actions },
        ],
        list,
      ),
    ),
  );
  if (canWrite()) main.append(section("New partner", newPartnerForm(created)));
}

function newPartnerForm(created) {
  const form = el(
    "form",
    { class: "card", novalidate: true },
    el("div", { class: "form-errors", tabindex: "-1" }),
    field("Code", "code", input({ required: true, placeholder: "TOKO_MAJU" }), "2 to 16 capital letters, digits or _"),
    field("Name", "name", input()),
    field("Currency", "currency", input({ value: "IDR" })),
    field("Time zone", "time_zone", input({ value: "Asia/Jakarta" })),
    el("button", { type: "submit", class: "primary", text: "Create partner" }),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = (name) => form.elements[name].value.trim();
    const body = { code: value("code"), currency: value("currency"), time_zone: value("time_zone") };
    if (value("name")) body.name = value("name");
    const answer = await api("campaignex", "v1/partners", { method: "POST", body });
    if (!answer.ok) {
      showErrors(form, answer.problem);
      return;
    }
    clearErrors(form);
    forgetPartners();
    showSecret(created, answer.data, `Partner ${answer.data.code} created`);
  });
  return form;
}

function showSecret(container, partner, title) {
  const key = partner.signing_key;
  const secret = el("code", { class: "secret", text: key.secret });
  const copy = el("button", {
    type: "button",
    text: "Copy the secret",
    onclick: async () => {
      try {
        await navigator.clipboard.writeText(key.secret);
        toast("Copied");
      } catch {
        toast("Select the secret and copy it");
      }
    },
  });
  container.replaceChildren(
    el(
      "div",
      { class: "card notice", role: "region", "aria-label": "New signing key", tabindex: "-1" },
      el("h2", { text: title }),
      el(
        "p",
        {},
        "Key id ",
        el("code", { text: key.key_id }),
        ". The secret is shown ",
        el("strong", { text: "only now" }),
        ": give it to the partner over a safe channel.",
      ),
      el("p", {}, secret, " ", copy),
      el("h3", { text: "How the partner signs a request" }),
      el(
        "ol",
        {},
        el(
          "li",
          {},
          "Send X-Cezbek-Partner: ",
          el("code", { text: partner.code }),
          " and X-Cezbek-Key-Id: ",
          el("code", { text: key.key_id }),
          ".",
        ),
        el("li", {}, "X-Cezbek-Timestamp: the unix time in seconds (within 300 s of the server's)."),
        el(
          "li",
          {},
          "X-Cezbek-Signature: lowercase hex HMAC-SHA256, keyed with the base64-decoded secret, over ",
          el("code", { text: "METHOD\\nPATH\\nTIMESTAMP\\nhex(sha256(body))" }),
          ".",
        ),
        el(
          "li",
          {},
          "Or: ",
          el("code", {
            text: `CEZBEK_SIGNING_SECRET=… cezbek sign --partner ${partner.code} --key-id ${key.key_id} --body body.json`,
          }),
        ),
      ),
    ),
  );
  container.firstChild.focus();
}

async function payoutPolicy(container, partner) {
  const answer = await api("campaignex", `v1/partners/${partner.code}`);
  if (!answer.ok) {
    toast(problemText(answer.problem));
    return;
  }
  const current = answer.data;
  const policy = current.payout_policy || {
    hold_days: 7,
    minimum: 10000,
    maximum_per_day: 1000000,
    pay_at: "09:00",
    fee_bearer: "PARTNER",
  };
  const form = el(
    "form",
    { class: "card", novalidate: true },
    el("h2", { text: `Payout policy of ${partner.code}` }),
    el("div", { class: "form-errors", tabindex: "-1" }),
    field("Hold days", "payout_policy.hold_days", input({ type: "number", value: policy.hold_days })),
    field(
      `Minimum payout (minor units of ${partner.currency})`,
      "payout_policy.minimum",
      input({ type: "number", value: policy.minimum }),
    ),
    field(
      "Maximum per customer per day (minor units)",
      "payout_policy.maximum_per_day",
      input({ type: "number", value: policy.maximum_per_day }),
    ),
    field("Pay from (partner-local HH:MM)", "payout_policy.pay_at", input({ value: policy.pay_at || "09:00" })),
    field(
      "Who bears the fee",
      "payout_policy.fee_bearer",
      select(
        [
          ["PARTNER", "the partner"],
          ["CUSTOMER", "the customer (deducted)"],
        ],
        policy.fee_bearer || "PARTNER",
      ),
    ),
    field(
      "Default wallet",
      "payout_policy.default_wallet",
      select(
        [["", "none"], ...["OVO", "GOPAY", "DANA", "LINKAJA", "SHOPEEPAY"].map((w) => [w, w])],
        policy.default_wallet || "",
      ),
    ),
    el("button", { type: "submit", class: "primary", text: "Save the policy" }),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const number = (name) => Number(form.elements[`payout_policy.${name}`].value);
    const next = {
      hold_days: number("hold_days"),
      minimum: number("minimum"),
      maximum_per_day: number("maximum_per_day"),
      pay_at: form.elements["payout_policy.pay_at"].value,
      fee_bearer: form.elements["payout_policy.fee_bearer"].value,
      default_wallet: form.elements["payout_policy.default_wallet"].value || null,
    };
    // What a read shows and a replacement may not carry: the version (If-Match says it) and
    // the signing keys (managed with POST …/keys).
    const { version, updated_at, keys, ...body } = current;
    const saved = await api("campaignex", `v1/partners/${partner.code}`, {
      method: "PUT",
      body: { ...body, payout_policy: next },
      headers: { "If-Match": `"${version}"` },
    });
    if (!saved.ok) {
      showErrors(form, saved.problem);
      return;
    }
    forgetPartners();
    toast("Payout policy saved");
    go("#/partners");
  });
  container.replaceChildren(form);
  form.querySelector("input").focus();
}

// ------------------------------------------------------------------ rules

export async function rules(main, args) {
  const { partner, picker } = await partnerPicker("rules", args[0]);
  main.append(picker);
  if (!partner) {
    main.append(el("p", { text: "No partners yet." }));
    return;
  }
  const editor = el("div");
  const [campaigns, exclusions, tiers, budgets] = await Promise.all([
    api("campaignex", `v1/partners/${partner.code}/campaigns`),
    api("campaignex", `v1/partners/${partner.code}/exclusions`),
    api("campaignex", `v1/partners/${partner.code}/tiers`),
    api("campaignex", `v1/partners/${partner.code}/budgets`),
  ]);
  const items = campaigns.ok ? campaigns.data.items : [];
  const reward = (c) =>
    "percent_bp" in c.reward ? `${c.reward.percent_bp / 100} %` : money(c.reward.fixed, partner.currency);
  main.append(
    section(
      "Campaigns",
      canWrite()
        ? el("button", {
            type: "button",
            class: "primary",
            text: "New campaign",
            onclick: () => campaignForm(editor, partner, null),
          })
        : null,
      editor,
      table(
        "Campaigns",
        [
          { label: "Id", value: (c) => c.id },
          { label: "Name", value: (c) => c.name || "" },
          { label: "Kind", value: (c) => c.kind },
          { label: "Status", value: (c) => c.status },
          { label: "Reward", value: reward },
          { label: "From", value: (c) => dateTime(c.starts_at, partner.time_zone, partner.currency) },
          { label: "Until", value: (c) => dateTime(c.ends_at, partner.time_zone, partner.currency) },
          {
            label: "",
            value: (c) =>
              canWrite()
                ? el("button", {
                    type: "button",
                    text: "Edit",
                    "aria-label": `Edit ${c.id}`,
                    onclick: () => campaignForm(editor, partner, c),
                  })
                : "",
          },
        ],
        items,
      ),
    ),
  );
  const budgetRows = budgets.ok ? budgets.data.items : [];
  main.append(
    section(
      "Budgets",
      table(
        "Budgets",
        [
          { label: "Campaign", value: (b) => b.campaign_id },
          { label: "Spent", numeric: true, value: (b) => money(b.spent, partner.currency) },
          { label: "Budget", numeric: true, value: (b) => money(b.budget, partner.currency) },
          { label: "Remaining", numeric: true, value: (b) => money(b.remaining, partner.currency) },
          {
            label: "Today",
            numeric: true,
            value: (b) =>
              `${money(b.spent_today, partner.currency)}${b.budget_per_day ? ` of ${money(b.budget_per_day, partner.currency)}` : ""}`,
          },
          { label: "Last hour", numeric: true, value: (b) => money(b.spent_last_hour, partner.currency) },
          {
            label: "Runs out",
            value: (b) =>
              b.remaining === 0
                ? "exhausted"
                : b.projected_exhaustion
                  ? dateTime(b.projected_exhaustion, partner.time_zone, partner.currency)
                  : "not at this rate",
          },
        ],
        budgetRows,
        { empty: "No campaign has a budget." },
      ),
    ),
  );
  const removeExclusion = async (x) => {
    const answer = await api("campaignex", `v1/partners/${partner.code}/exclusions/${encodeURIComponent(x.id)}`, {
      method: "DELETE",
      headers: { "If-Match": `"${x.version}"` },
    });
    if (answer.status === 412) {
      toast(`${x.id} was changed by someone else: reloaded`);
      go(`#/rules/${partner.code}`);
      return;
    }
    if (!answer.ok) {
      toast(problemText(answer.problem));
      return;
    }
    toast(`Exclusion ${x.id} deleted`);
    go(`#/rules/${partner.code}`);
  };
  main.append(
    section(
      "Exclusions",
      canWrite() ? exclusionForm(partner) : null,
      table(
        "Exclusions",
        [
          { label: "Id", value: (x) => x.id },
          {
            label: "Excludes",
            value: (x) => (x.mcc ? `MCC ${x.mcc}` : x.merchant ? `merchant ${x.merchant}` : `customer ${x.msisdn}`),
          },
          { label: "Reason", value: (x) => x.reason || "" },
          { label: "From", value: (x) => dateTime(x.valid_from, partner.time_zone, partner.currency) },
          {
            label: "Until",
            value: (x) => (x.valid_until ? dateTime(x.valid_until, partner.time_zone, partner.currency) : "no end"),
          },
          {
            label: "",
            value: (x) =>
              canWrite()
                ? el("button", {
                    type: "button",
                    text: "Delete",
                    "aria-label": `Delete exclusion ${x.id}`,
                    onclick: () => removeExclusion(x),
                  })
                : "",
          },
        ],
        exclusions.ok ? exclusions.data.items : [],
        { empty: "No exclusions." },
      ),
    ),
  );
  const program = tiers.ok ? tiers.data : null;
  main.append(
    section(
      "Tier program",
      program
        ? table(
            `Tiers over ${program.window_days} days`,
            [
              { label: "Tier", value: (t) => t.name },
              { label: "Purchases", numeric: true, value: (t) => t.min_purchases ?? "—" },
              { label: "Spend", numeric: true, value: (t) => money(t.min_spend, partner.currency) },
              { label: "Multiplier", numeric: true, value: (t) => `×${(t.multiplier_bp ?? 10000) / 10000}` },
              { label: "Bonus", numeric: true, value: (t) => money(t.fixed_bonus || 0, partner.currency) },
            ],
            program.tiers,
          )
        : el("p", { class: "muted", text: "No tier program." }),
      canWrite() ? tierForm(partner, program) : null,
    ),
  );
  main.append(section("Dry run", dryRun(partner)));
  main.append(section("Backtest", backtestPanel(partner, items)));
}

function campaignForm(container, partner, campaign) {
  const c = campaign || {
    id: "",
    name: "",
    kind: "BONUS",
    status: "ACTIVE",
    reward: { percent_bp: 100 },
    starts_at: new Date().toISOString().slice(0, 19) + "Z",
    ends_at: new Date(Date.now() + 30 * 86400000).toISOString().slice(0, 19) + "Z",
    conditions: { currency: partner.currency },
  };
  const isPercent = "percent_bp" in c.reward;
  const numberOrNull = (value) => (value === "" ? null : Number(value));
  const form = el(
    "form",
    { class: "card", novalidate: true, "aria-label": campaign ? `Edit campaign ${c.id}` : "New campaign" },
    el("h3", { text: campaign ? `Edit ${c.id} (version ${c.version})` : "New campaign" }),
    el("div", { class: "form-errors", tabindex: "-1" }),
    field("Id", "id", input({ value: c.id, readonly: !!campaign })),
    field("Name", "name", input({ value: c.name || "" })),
    field(
      "Kind",
      "kind",
      select(
        [
          ["BASE", "base"],
          ["BONUS", "bonus"],
        ],
        c.kind,
      ),
    ),
    field(
      "Status",
      "status",
      select(
        [
          ["ACTIVE", "active"],
          ["PAUSED", "paused"],
        ],
        c.status,
      ),
    ),
    field(
      "Reward",
      "reward.kind",
      select(
        [
          ["percent_bp", "percentage (basis points)"],
          ["fixed", "fixed amount (minor units)"],
        ],
        isPercent ? "percent_bp" : "fixed",
      ),
    ),
    field(
      "Reward value",
      "reward",
      input({ type: "number", value: isPercent ? c.reward.percent_bp : c.reward.fixed }),
      "100 basis points = 1 %",
    ),
    field("Starts at", "starts_at", input({ value: c.starts_at })),
    field("Ends at", "ends_at", input({ value: c.ends_at })),
    field(
      "Minimum amount (minor units)",
      "conditions.min_amount",
      input({ type: "number", value: c.conditions.min_amount ?? "" }),
    ),
    field("MCCs (comma-separated)", "conditions.mccs", input({ value: (c.conditions.mccs || []).join(",") })),
    field(
      "Cap per transaction (minor units)",
      "max_per_transaction",
      input({ type: "number", value: c.max_per_transaction ?? "" }),
    ),
    field("Budget (minor units)", "budget", input({ type: "number", value: c.budget ?? "" })),
    field("Budget per day (minor units)", "budget_per_day", input({ type: "number", value: c.budget_per_day ?? "" })),
    el(
      "div",
      { class: "actions" },
      el("button", { type: "submit", class: "primary", text: campaign ? "Save" : "Create" }),
      el("button", { type: "button", text: "Cancel", onclick: () => container.replaceChildren() }),
    ),
  );
  const version = c.version;
  const body = () => {
    const value = (name) => form.elements[name].value.trim();
    const rewardValue = numberOrNull(value("reward"));
    const mccs = value("conditions.mccs")
      ? value("conditions.mccs")
          .split(",")
          .map((m) => Number(m.trim()))
      : [];
    const next = {
      ...(campaign
        ? Object.fromEntries(Object.entries(campaign).filter(([k]) => !["version", "updated_at"].includes(k)))
        : {}),
      id: value("id"),
      name: value("name"),
      kind: value("kind"),
      status: value("status"),
      reward: { [value("reward.kind")]: rewardValue },
      starts_at: value("starts_at"),
      ends_at: value("ends_at"),
      conditions: { ...c.conditions, min_amount: numberOrNull(value("conditions.min_amount")), mccs },
      max_per_transaction: numberOrNull(value("max_per_transaction")),
      budget: numberOrNull(value("budget")),
      budget_per_day: numberOrNull(value("budget_per_day")),
    };
    return next;
  };
  const save = async (ifMatch) => {
    const path = campaign
      ? `v1/partners/${partner.code}/campaigns/${encodeURIComponent(c.id)}`
      : `v1/partners/${partner.code}/campaigns`;
    const answer = await api("campaignex", path, {
      method: campaign ? "PUT" : "POST",
      body: body(),
      headers: campaign ? { "If-Match": `"${ifMatch}"` } : {},
    });
    if (answer.status === 412) {
      conflict(form, partner, c, save);
      return;
    }
    if (!answer.ok) {
      showErrors(form, answer.problem);
      return;
    }
    toast(`Campaign ${answer.data.id} saved: live in the rules within a moment`);
    go(`#/rules/${partner.code}`);
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    save(version);
  });
  container.replaceChildren(form);
  form.querySelector("input:not([readonly])").focus();
}

function exclusionForm(partner) {
  const kind = select(
    [
      ["mcc", "a merchant category (MCC)"],
      ["merchant", "a merchant"],
      ["msisdn", "a customer (msisdn)"],
    ],
    "mcc",
  );
  const target = input({ placeholder: "5999" });
  const form = el(
    "form",
    { class: "card", novalidate: true, "aria-label": "New exclusion" },
    el("h3", { text: "New exclusion" }),
    el("div", { class: "form-errors", tabindex: "-1" }),
    field("Id", "id", input()),
    field("Excludes", "kind", kind),
    field("Value", "mcc", target, "The MCC, the merchant's name or the customer's number"),
    field("Reason", "reason", input()),
    field("Valid from", "valid_from", input({ value: new Date().toISOString().slice(0, 19) + "Z" })),
    field("Valid until (empty: no end)", "valid_until", input()),
    el("button", { type: "submit", text: "Add the exclusion" }),
  );
  // The server names the target's own field (mcc, merchant or msisdn): the value takes that name.
  kind.addEventListener("change", () => {
    target.dataset.field = kind.value;
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = (name) => form.elements[name].value.trim();
    target.dataset.field = kind.value;
    const raw = target.value.trim();
    const body = {
      id: value("id"),
      reason: value("reason"),
      valid_from: value("valid_from"),
      [kind.value]: kind.value === "mcc" && /^[0-9]+$/.test(raw) ? Number(raw) : raw,
    };
    if (value("valid_until")) body.valid_until = value("valid_until");
    const answer = await api("campaignex", `v1/partners/${partner.code}/exclusions`, { method: "POST", body });
    if (!answer.ok) {
      showErrors(form, answer.problem);
      return;
    }
    toast(`Exclusion ${answer.data.id} added: live in the rules within a moment`);
    go(`#/rules/${partner.code}`);
  });
  return form;
}

function tierForm(partner, program) {
  const tiers = el("textarea", { rows: 6, spellcheck: "false" });
  tiers.value = JSON.stringify(
    program
      ? program.tiers
      : [
          { name: "SILVER", min_purchases: 5, multiplier_bp: 11000 },
          { name: "GOLD", min_purchases: 20, multiplier_bp: 12000 },
        ],
    null,
    2,
  );
  const form = el(
    "form",
    { class: "card", novalidate: true, "aria-label": "Tier program" },
    el("h3", { text: program ? `Change the tier program (version ${program.version})` : "Start a tier program" }),
    el("div", { class: "form-errors", tabindex: "-1" }),
    field("Window (days)", "window_days", input({ type: "number", value: program ? program.window_days : 30 })),
    field(
      "Tiers, lowest first (JSON)",
      "tiers",
      tiers,
      "name, min_purchases and/or min_spend (minor units), multiplier_bp (10000 = ×1), fixed_bonus",
    ),
    el("button", { type: "submit", text: "Save the tier program" }),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let parsed;
    try {
      parsed = JSON.parse(tiers.value);
    } catch (error) {
      showErrors(form, { detail: "the tiers are not JSON", errors: [{ field: "tiers", reason: String(error) }] });
      return;
    }
    const body = { window_days: Number(form.elements.window_days.value), tiers: parsed };
    const headers = program ? { "If-Match": `"${program.version}"` } : {};
    const answer = await api("campaignex", `v1/partners/${partner.code}/tiers`, { method: "PUT", body, headers });
    if (answer.status === 412) {
      showErrors(form, {
        detail: "Someone else changed the tier program since you opened it: reload the page to see theirs.",
      });
      return;
    }
    if (!answer.ok) {
      showErrors(form, answer.problem);
      return;
    }
    toast("Tier program saved: live in the rules within a moment");
    go(`#/rules/${partner.code}`);
  });
  return form;
}

// Someone changed the campaign since the form was opened: reload theirs, or save over it.
async function conflict(form, partner, campaign, save) {
  const current = await api("campaignex", `v1/partners/${partner.code}/campaigns/${encodeURIComponent(campaign.id)}`);
  const theirs = current.ok ? current.data : null;
  const box = el(
    "div",
    { class: "card conflict", role: "alertdialog", "aria-labelledby": "conflict-title", tabindex: "-1" },
    el("h3", { id: "conflict-title", text: "Someone else changed this campaign" }),
    el("p", {
      text: theirs
        ? `It is at version ${theirs.version} now (you opened version ${campaign.version}), changed ${dateTime(theirs.updated_at, partner.time_zone, partner.currency)}.`
        : "It was changed or deleted since you opened it.",
    }),
    el(
      "div",
      { class: "actions" },
      el("button", {
        type: "button",
        text: "Reload theirs (drop my edits)",
        onclick: () => go(`#/rules/${partner.code}`),
      }),
      theirs
        ? el("button", {
            type: "button",
            class: "danger",
            text: "Overwrite with mine",
            onclick: () => {
              box.remove();
              save(theirs.version);
            },
          })
        : null,
    ),
  );
  form.prepend(box);
  box.focus();
}

function dryRun(partner) {
  const result = el("div", { "aria-live": "polite" });
  const form = el(
    "form",
    { class: "card", novalidate: true, "aria-label": "Dry run" },
    el("p", { class: "muted", text: "A sample transaction against the live rules: nothing is recorded." }),
    el("div", { class: "form-errors", tabindex: "-1" }),
    field("Customer (msisdn)", "msisdn", input({ value: "+628123456789" })),
    field(`Amount (minor units of ${partner.currency})`, "amount", input({ type: "number", value: "10000000" })),
    field("MCC", "mcc", input({ type: "number", value: "" })),
    field("Merchant", "merchant", input({ value: "" })),
    el("button", { type: "submit", text: "Try it" }),
    result,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = (name) => form.elements[name].value.trim();
    const body = { msisdn: value("msisdn"), amount: Number(value("amount")) };
    if (value("mcc")) body.mcc = Number(value("mcc"));
    if (value("merchant")) body.merchant = value("merchant");
    const answer = await api("campaignex", `v1/partners/${partner.code}/evaluate`, { method: "POST", body });
    if (!answer.ok) {
      showErrors(form, answer.problem);
      result.replaceChildren();
      return;
    }
    clearErrors(form);
    const decision = answer.data.decision;
    result.replaceChildren(
      el(
        "div",
        { class: "decision" },
        el(
          "p",
          {},
          el("strong", { text: decision.outcome }),
          " — cashback ",
          el("strong", { class: "cashback", text: money(decision.cashback, partner.currency) }),
          ` under rules revision ${decision.rules_revision}`,
        ),
        el("p", { class: "explanation", text: decision.explanation }),
        decision.applied_campaigns.length
          ? el(
              "ul",
              {},
              decision.applied_campaigns.map((a) =>
                el("li", { text: `${a.campaign_id} (${a.kind}): ${money(a.amount, partner.currency)}` }),
              ),
            )
          : null,
      ),
    );
  });
  return form;
}

function backtestPanel(partner, campaigns) {
  const draft = el("textarea", { rows: 8, spellcheck: "false" });
  draft.value = JSON.stringify(
    campaigns.map(({ version, updated_at, ...c }) => c),
    null,
    2,
  );
  const status = el("div", { "aria-live": "polite" });
  const form = el(
    "form",
    { class: "card", novalidate: true, "aria-label": "Backtest" },
    el("p", {
      class: "muted",
      text: "Replays the partner's transactions of a period under a draft of the campaigns and compares with what was paid. Leave the draft empty to replay as recorded.",
    }),
    el("div", { class: "form-errors", tabindex: "-1" }),
    field("From (partner-local day)", "period.from", input({ type: "date", value: localDay(partner.time_zone, 6) })),
    field("To", "period.to", input({ type: "date", value: localDay(partner.time_zone) })),
    field("Draft campaigns (JSON)", "draft.campaigns", draft),
    canWrite()
      ? el("button", { type: "submit", text: "Run the backtest" })
      : el("p", { class: "muted", text: "Viewers can read backtests but not start them." }),
    status,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { from: form.elements["period.from"].value, to: form.elements["period.to"].value };
    if (draft.value.trim()) {
      try {
        body.draft = { campaigns: JSON.parse(draft.value) };
      } catch (error) {
        showErrors(form, {
          detail: "the draft is not JSON",
          errors: [{ field: "draft.campaigns", reason: String(error) }],
        });
        return;
      }
    }
    const started = await api("campaignex", `v1/partners/${partner.code}/backtests`, { method: "POST", body });
    if (!started.ok) {
      showErrors(form, started.problem);
      return;
    }
    clearErrors(form);
    let job = started.data;
    const bar = progress("Backtest progress", null, null);
    const line = el("p");
    status.replaceChildren(bar, line);
    while (["QUEUED", "RUNNING"].includes(job.state)) {
      await sleep(300);
      const polled = await api("campaignex", `v1/partners/${partner.code}/backtests/${job.id}`);
      if (!polled.ok) break;
      job = polled.data;
      const p = job.progress;
      if (p.estimated) {
        bar.max = p.estimated;
        bar.value = Math.min(p.read, p.estimated);
      }
      line.textContent = `${job.state}: ${integer(p.read)} of ${p.estimated ? integer(p.estimated) : "?"} read, ${integer(p.rate_per_second)}/s${typeof p.eta_seconds === "number" ? `, ${p.eta_seconds} s left` : ""}`;
    }
    if (job.state !== "SUCCEEDED") {
      status.replaceChildren(alertBox(`The backtest ${job.state.toLowerCase()}: ${job.error || ""}`));
      return;
    }
    const report = job.report;
    const t = report.totals;
    status.replaceChildren(
      el(
        "ul",
        { class: "stats" },
        el("li", {}, el("span", { class: "stat", text: money(t.baseline.net, partner.currency) }), " recorded"),
        el("li", {}, el("span", { class: "stat", text: money(t.replay.net, partner.currency) }), " under the draft"),
        el("li", {}, el("span", { class: "stat", text: money(t.difference, partner.currency) }), " difference"),
        el("li", {}, el("span", { class: "stat", text: integer(t.transactions) }), " transactions"),
      ),
      barChart(
        "Cashback per day: recorded and draft",
        report.days.map((d) => d.day),
        [
          { name: "recorded", values: report.days.map((d) => d.baseline) },
          { name: "draft", values: report.days.map((d) => d.replay) },
        ],
        (v) => money(v, partner.currency),
      ),
      table(
        "Tier migrations",
        [
          { label: "Recorded tier", value: (m) => m.baseline_tier ?? "none" },
          { label: "Tier under the draft", value: (m) => m.replay_tier ?? "none" },
          { label: "Customers", numeric: true, value: (m) => integer(m.customers) },
        ],
        report.tier_migrations,
      ),
    );
  });
  return form;
}

// ------------------------------------------------------------------ uploads

export async function uploads(main, args) {
  const { partner, picker } = await partnerPicker("uploads", args[0]);
  if (!partner) {
    main.append(el("p", { text: "No partners yet." }));
    return;
  }
  const status = el("div", { "aria-live": "polite" });
  const chooser = el("input", { type: "file", accept: ".csv,text/csv" });
  const zone = el(
    "div",
    { class: "dropzone" },
    el("p", { text: "Drag a CSV file here, or choose one:" }),
    field("CSV file", "file", chooser),
  );
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    if (event.dataTransfer.files[0]) upload(partner, event.dataTransfer.files[0], status);
  });
  chooser.addEventListener("change", () => chooser.files[0] && upload(partner, chooser.files[0], status));
  main.append(picker, canWrite() ? zone : el("p", { class: "muted", text: "Viewers cannot upload files." }), status);
}

async function upload(partner, file, status) {
  const created = await api("ingestor", "v1/uploads", { method: "POST", body: { partner: partner.code } });
  if (!created.ok) {
    status.replaceChildren(alertBox(problemText(created.problem)));
    return;
  }
  const { upload_id: id, url } = created.data;
  const sending = progress("Uploading", 0, file.size);
  const sendingLine = el("p", { text: `Uploading ${file.name}…` });
  status.replaceChildren(el("h2", { text: file.name }), sendingLine, sending);
  // Straight to the bucket through the presigned URL: the file never passes through a service.
  const sent = await new Promise((resolve) => {
    const request = new XMLHttpRequest();
    request.open("PUT", url);
    request.setRequestHeader("Content-Type", "text/csv");
    request.upload.onprogress = (event) => {
      sending.value = event.loaded;
    };
    request.onload = () =>
      resolve(request.status >= 200 && request.status < 300 ? null : `the bucket answered ${request.status}`);
    request.onerror = () => resolve("the bucket could not be reached (is its CORS rule set?)");
    request.send(file);
  });
  if (sent) {
    status.append(alertBox(`The upload failed: ${sent}`));
    return;
  }
  sending.value = file.size;
  sendingLine.textContent = `Uploaded ${integer(file.size)} bytes. Waiting for the ingestor…`;
  const ingesting = progress("Ingesting", null, null);
  const line = el("p", { class: "ingest-line" });
  status.append(el("h3", { text: "Ingestion" }), ingesting, line);
  let upload;
  for (;;) {
    await sleep(400);
    const answer = await api("ingestor", `v1/uploads/${id}`);
    if (!answer.ok) {
      status.append(alertBox(problemText(answer.problem)));
      return;
    }
    upload = answer.data;
    const p = upload.progress;
    if (p) {
      if (p.bytes_total) {
        ingesting.max = p.bytes_total;
        ingesting.value = p.bytes_read;
      }
      line.textContent =
        `${upload.status}: ${integer(p.rows)} rows, ${integer(p.accepted)} accepted, ${integer(p.rejected)} rejected` +
        `${p.rows_per_second ? `, ${integer(p.rows_per_second)} rows/s` : ""}${typeof p.eta_seconds === "number" ? `, ${Math.round(p.eta_seconds)} s left` : ""}`;
    } else {
      line.textContent = `${upload.status}: the ingestor has not picked the file up yet`;
    }
    if (upload.status === "done" || upload.status === "failed") break;
  }
  ingesting.max = 1;
  ingesting.value = 1;
  const summary = upload.summary || {};
  status.append(
    el("h3", { text: upload.status === "done" ? "Done" : "Failed" }),
    el(
      "ul",
      { class: "stats summary" },
      el("li", {}, el("span", { class: "stat", text: integer(summary.rows) }), " rows"),
      el("li", {}, el("span", { class: "stat", text: integer(summary.accepted) }), " accepted"),
      el("li", {}, el("span", { class: "stat", text: integer(summary.rejected) }), " rejected"),
    ),
    summary.failure ? alertBox(summary.failure) : null,
  );
  const rejects = [];
  for (let after = 0; after !== null && rejects.length < 10000;) {
    const page = await api("ingestor", `v1/uploads/${id}/rejects?after=${after}&limit=1000`);
    if (!page.ok) break;
    rejects.push(...page.data.items);
    after = page.data.next_after ?? null;
  }
  if (rejects.length) {
    status.append(
      el("button", {
        type: "button",
        text: "Download the rejected lines (CSV)",
        onclick: () =>
          downloadCsv(
            `${file.name}.rejects.csv`,
            ["line", "raw", "reasons"],
            rejects.map((r) => [r.line, r.raw, r.reasons]),
          ),
      }),
      table(
        "Rejected lines",
        [
          { label: "Line", numeric: true, value: (r) => r.line },
          { label: "Reasons", value: (r) => r.reasons },
          { label: "The line", value: (r) => el("code", { text: r.raw }) },
        ],
        rejects.slice(0, 200),
        { class: "rejects" },
      ),
    );
  }
}

// ------------------------------------------------------------------ customers

export async function customers(main, args) {
  const { partner, picker } = await partnerPicker("customers", args[0]);
  if (!partner) {
    main.append(el("p", { text: "No partners yet." }));
    return;
  }
  const msisdn = input({ value: args[1] || "", placeholder: "0812…, 62812… or +62812…", required: true });
  const found = el("div");
  const form = el(
    "form",
    { class: "card inline", role: "search", "aria-label": "Look up a customer" },
    el("div", { class: "form-errors", tabindex: "-1" }),
    field("Customer (msisdn, any form)", "msisdn", msisdn),
    el("button", { type: "submit", class: "primary", text: "Look up" }),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    go(`#/customers/${encodeURIComponent(partner.code)}/${encodeURIComponent(msisdn.value.trim())}`);
  });
  main.append(picker, form, found);
  if (!args[1]) return;
  const who = encodeURIComponent(args[1]);
  const [summary, history, payouts] = await Promise.all([
    api("informer", `v1/partners/${partner.code}/customers/${who}/summary`),
    api("informer", `v1/partners/${partner.code}/customers/${who}/rewards?limit=50`),
    api("informer", `v1/partners/${partner.code}/customers/${who}/payouts`),
  ]);
  if (!summary.ok) {
    showErrors(form, summary.problem);
    return;
  }
  const s = summary.data;
  const cur = s.currency || partner.currency;
  const next = s.next_tier;
  found.append(
    section(
      `Customer ${s.msisdn}`,
      el(
        "ul",
        { class: "stats" },
        el("li", {}, el("span", { class: "stat", text: s.tier || "no tier" }), " tier"),
        el("li", {}, el("span", { class: "stat", text: money(s.cashback_lifetime, cur) }), " cashback in all"),
        el("li", {}, el("span", { class: "stat", text: money(s.cashback_last_30_days, cur) }), " in the last 30 days"),
        el(
          "li",
          {},
          el("span", { class: "stat", text: integer(s.purchases, cur) }),
          ` ${s.purchases === 1 ? "purchase" : "purchases"}`,
        ),
      ),
      next
        ? el("p", {
            // Only what is still missing: no "0 more purchases", no "Rp 0,00 more spend".
            text: `To reach ${next.name}: ${[
              next.purchases_needed > 0 ? plural(next.purchases_needed, "more purchase", "more purchases") : null,
              next.spend_needed > 0 ? `${money(next.spend_needed, cur)} more spend` : null,
            ]
              .filter(Boolean)
              .join(" and ")} in the window.`,
          })
        : null,
    ),
  );
  if (payouts.ok) {
    found.append(
      section(
        "Balance and payouts",
        table(
          "Balance",
          [
            { label: "Currency", value: (b) => b.currency },
            { label: "Held", numeric: true, value: (b) => money(b.held, b.currency) },
            { label: "Payable", numeric: true, value: (b) => money(b.payable, b.currency) },
            { label: "Being paid", numeric: true, value: (b) => money(b.in_flight, b.currency) },
            { label: "Paid", numeric: true, value: (b) => money(b.paid, b.currency) },
          ],
          payouts.data.balances,
        ),
        table(
          "Payouts",
          [
            { label: "Day", value: (p) => p.id.split("/").pop() },
            { label: "State", value: (p) => p.state },
            { label: "Amount", numeric: true, value: (p) => money(p.amount, p.currency) },
            { label: "Fee", numeric: true, value: (p) => money(p.fee, p.currency) },
            { label: "Provider", value: (p) => p.provider || "—" },
            { label: "When", value: (p) => dateTime(p.created_at, partner.time_zone, p.currency) },
          ],
          payouts.data.payouts,
          { empty: "No payouts." },
        ),
      ),
    );
  }
  const rewards = history.ok ? history.data.rewards : [];
  found.append(
    section(
      "History",
      table(
        "Rewards, newest first",
        [
          { label: "When", value: (r) => dateTime(r.occurred_at, partner.time_zone, r.currency) },
          { label: "Transaction", value: (r) => r.transaction_id },
          { label: "Amount", numeric: true, value: (r) => money(r.amount, r.currency) },
          { label: "Outcome", value: (r) => r.outcome },
          { label: "Cashback", numeric: true, value: (r) => money(r.cashback, r.currency) },
          {
            label: "Why",
            value: (r) =>
              el(
                "details",
                { class: "why" },
                el("summary", { text: "Why?" }),
                el("p", { text: r.explanation }),
                el("p", {
                  class: "muted",
                  text: `Rules revision ${r.rules_revision}; decided ${dateTime(r.decided_at, partner.time_zone, r.currency)}`,
                }),
              ),
          },
        ],
        rewards,
        { empty: "No transactions." },
      ),
    ),
  );
}

// ------------------------------------------------------------------ reports

export async function reports(main, args) {
  const { partner, picker } = await partnerPicker("reports", args[0]);
  if (!partner) {
    main.append(el("p", { text: "No partners yet." }));
    return;
  }
  const day = input({ type: "date", value: args[1] || localDay(partner.time_zone) });
  const form = el(
    "form",
    { class: "card inline", "aria-label": "Report day" },
    field("Day", "date", day),
    el("button", { type: "submit", text: "Show" }),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    go(`#/reports/${partner.code}/${day.value}`);
  });
  main.append(picker, form);
  const date = day.value;
  const [daily, statement] = await Promise.all([
    api("informer", `v1/partners/${partner.code}/reports/daily?date=${date}`),
    api("payouts", `v1/partners/${partner.code}/statement?from=${date}&to=${date}`),
  ]);
  if (daily.ok) {
    const r = daily.data;
    const csv = el("button", {
      type: "button",
      text: "Download CSV",
      onclick: async () => {
        const answer = await api("informer", `v1/partners/${partner.code}/reports/daily?date=${date}&format=csv`, {
          raw: true,
          headers: { Accept: "text/csv" },
        });
        if (answer.ok) downloadBlob(`${partner.code}-${date}.csv`, answer.blob);
        else toast(problemText(answer.problem));
      },
    });
    main.append(
      section(
        `Daily report, ${date}`,
        csv,
        table(
          "By campaign",
          [
            { label: "Campaign", value: (c) => c.campaign_id },
            { label: "Kind", value: (c) => c.kind },
            { label: "Transactions", numeric: true, value: (c) => integer(c.transactions, partner.currency) },
            { label: "Cashback", numeric: true, value: (c) => money(c.cashback, partner.currency) },
          ],
          r.by_campaign,
        ),
        barChart(
          "Cashback by campaign",
          r.by_campaign.map((c) => `     ${c.campaign_id}`),
          [{ name: "cashback", values: r.by_campaign.map((c) => c.cashback) }],
          (v) => money(v, partner.currency),
        ),
        table(
          "By tier",
          [
            { label: "Tier", value: (t) => t.tier },
            { label: "Purchases", numeric: true, value: (t) => integer(t.purchases, partner.currency) },
            { label: "Cashback", numeric: true, value: (t) => money(t.cashback, partner.currency) },
            { label: "Clawbacks", numeric: true, value: (t) => money(t.clawback, partner.currency) },
          ],
          r.by_tier,
        ),
      ),
    );
  } else {
    main.append(alertBox(problemText(daily.problem)));
  }
  if (statement.ok) {
    const s = statement.data;
    const items = [
      "cashback_earned",
      "clawed_back",
      "paid_out",
      "fees",
      "reversed",
      "held",
      "payable",
      "in_flight",
      "outstanding",
    ];
    main.append(
      section(
        "Partner statement",
        table(
          `Statement ${s.from} to ${s.to}`,
          [
            { label: "Item", value: (item) => item.replaceAll("_", " ") },
            { label: "Amount", numeric: true, value: (item) => money(s[item], s.currency) },
          ],
          items,
        ),
      ),
    );
  }
  const providers = await api("campaignex", "v1/providers");
  const names = providers.ok ? providers.data.items.map((p) => p.name) : [];
  const recon = el("div");
  main.append(section("Payout reconciliation", recon));
  for (const name of names) {
    const answer = await api("payouts", `v1/providers/${encodeURIComponent(name)}/reconciliation?date=${date}`);
    if (!answer.ok) {
      recon.append(el("p", { text: `${name}: ${problemText(answer.problem)}` }));
      continue;
    }
    const r = answer.data;
    recon.append(
      table(
        `${name}, ${r.date}: ${r.matched} matched, ${r.mismatched} mismatched`,
        [
          { label: "Payout", value: (l) => l.payout_id || l.reference || "—" },
          { label: "Finding", value: (l) => l.finding },
          { label: "Cezbek", numeric: true, value: (l) => money(l.cezbek_amount, r.currency) },
          { label: "Provider", numeric: true, value: (l) => money(l.provider_amount, r.currency) },
        ],
        r.lines.slice(0, 50),
        { rowClass: (l) => (l.finding === "MATCHED" ? null : "mismatch"), empty: "No payouts that day." },
      ),
    );
  }
}

// ------------------------------------------------------------------ audit

export async function audit(main, args) {
  // #/audit/{entity}/{id}: the filters are in the route, so a filtered trail can be linked.
  const [entity = "", id = ""] = args;
  const kinds = [
    ["", "every kind"],
    ["partner", "partners"],
    ["campaign", "campaigns"],
    ["exclusion", "exclusions"],
    ["tiers", "tier programs"],
    ["provider", "payment providers"],
  ];
  const kind = select(kinds, entity);
  const which = input({ value: id, placeholder: "TOKO or TOKO/weekday-1.5" });
  const form = el(
    "form",
    { class: "card inline", role: "search", "aria-label": "Filter the audit trail" },
    field("Kind", "entity", kind),
    field("Rule", "id", which),
    el("button", { type: "submit", text: "Filter" }),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    go(`#/audit/${encodeURIComponent(kind.value)}/${encodeURIComponent(which.value.trim())}`);
  });
  main.append(form);
  const query = new URLSearchParams({ limit: "50" });
  if (entity) query.set("entity", entity);
  if (id) query.set("id", id);
  const answer = await api("campaignex", `v1/audit?${query}`);
  if (!answer.ok) {
    main.append(alertBox(problemText(answer.problem)));
    return;
  }
  main.append(el("p", { class: "muted", text: `The ${answer.data.items.length} newest changes.` }));
  main.append(
    el(
      "ol",
      { class: "audit" },
      answer.data.items.map((entry) =>
        el(
          "li",
          { class: "card" },
          el(
            "p",
            {},
            el("strong", { text: `${entry.action} ${entry.entity} ${entry.id}` }),
            ` by ${entry.actor}, `,
            el("time", {
              datetime: entry.at,
              text: dateTime(entry.at, Intl.DateTimeFormat().resolvedOptions().timeZone, "USD"),
            }),
            ` (revision ${entry.revision})`,
          ),
          diffTable(entry.before, entry.after),
        ),
      ),
    ),
  );
}

// The fields a change touched, before and after, flattened to dotted paths.
function diffTable(before, after) {
  const flat = (value, prefix = "", out = {}) => {
    if (value && typeof value === "object" && !Array.isArray(value)) {
      for (const [key, inner] of Object.entries(value)) flat(inner, prefix ? `${prefix}.${key}` : key, out);
    } else if (prefix) {
      out[prefix] = value === undefined ? undefined : JSON.stringify(value);
    }
    return out;
  };
  const a = flat(before || {});
  const b = flat(after || {});
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])]
    .filter((key) => a[key] !== b[key] && !["version", "updated_at"].includes(key))
    .sort();
  return table(
    "What changed",
    [
      { label: "Field", value: (key) => key },
      { label: "Before", value: (key) => el("del", { text: a[key] ?? "—" }) },
      { label: "After", value: (key) => el("ins", { text: b[key] ?? "—" }) },
    ],
    keys,
    { empty: "No field changed." },
  );
}
