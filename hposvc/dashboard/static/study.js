/* Study page: header and actions, a server-paginated sortable trials table, lazy charts. */
"use strict";
const NAME = PAGE.study;
const Q = encodeURIComponent(NAME);
const ALLOWED = { pause: ["running"], resume: ["paused"], stop: ["running", "paused"] };
const CHARTS = [
  ["history", "Optimization history"], ["intermediate", "Intermediate values"],
  ["parallel", "Parallel coordinates"], ["importance", "Hyperparameter importance"],
  ["slice", "Slice"], ["contour", "Contour"], ["pareto", "Pareto front"],
  ["timeline", "Timeline per worker"],
];
const table = { sort: "number", order: "desc", offset: 0, limit: 100, state: "" };
let summary = null;
let columns = [];
const charts = new Map(); /* kind -> {node, visible, version, busy, last} */

function card(key, value) {
  return el("div", { class: "card" }, el("div", { class: "k", text: key }), el("div", { class: "v", text: value }));
}

function renderSummary(s) {
  const state = document.getElementById("study-state");
  state.className = "state s-" + s.state;
  state.textContent = s.state;
  for (const [action, states] of Object.entries(ALLOWED)) {
    document.getElementById("btn-" + action).disabled = !states.includes(s.state);
  }
  const c = s.counts;
  const finished = c.complete + c.pruned + c.fail;
  const best = s.best_trial
    ? fmtNum(s.best_trial.values[0]) + " (#" + s.best_trial.number + ")"
    : s.pareto_front ? s.pareto_front.length + " trials on the front" : "–";
  document.getElementById("summary").replaceChildren(
    card("Progress", finished + " / " + s.spec.budget.max_trials),
    card("Running", String(c.running)), card("Complete", String(c.complete)),
    card("Pruned", String(c.pruned)), card("Failed", String(c.fail)),
    card("Waiting", String(c.waiting)),
    card("Best " + s.spec.objectives.map((o) => o.name).join(", "), best),
    card("Sampler / pruner", s.spec.sampler.name + " / " + s.spec.pruner.name),
    card("Created", fmtTime(s.created_at)));
}

function buildColumns(s) {
  const objectives = s.spec.objectives;
  columns = [
    { key: "number", label: "#", cell: (t) => el("a", { href: "/trials/" + t.id, text: "#" + t.number }) },
    { key: "state", label: "State", cell: (t) => badge(t.state) },
    ...objectives.map((o, i) => ({
      key: objectives.length === 1 ? "value" : "values." + i, label: o.name, num: true,
      cell: (t) => fmtNum(t.values ? t.values[i] : null),
    })),
    ...Object.keys(s.spec.search_space).map((p) => ({
      key: "params." + p, label: p, num: true, cell: (t) => fmtNum(t.params[p]),
    })),
    { key: "last_step", label: "Step", num: true, cell: (t) => fmtNum(t.last_step) },
    { key: "worker_id", label: "Worker", num: true, cell: (t) => fmtNum(t.worker_id) },
    { key: "attempt", label: "Try", num: true, cell: (t) => String(t.attempt) },
    { key: "duration", label: "Duration", num: true, cell: (t) => fmtDuration(t.started_at, t.finished_at) },
    { key: "finished_at", label: "Finished", cell: (t) => fmtTime(t.finished_at) },
  ];
  const row = el("tr", {}, ...columns.map((c) => el("th", {
    class: "sortable" + (c.num ? " num" : ""), "data-sort": c.key, text: c.label,
    onclick: () => {
      table.order = table.sort === c.key && table.order === "asc" ? "desc" : "asc";
      table.sort = c.key;
      table.offset = 0;
      loadTrials();
    },
  })));
  document.querySelector("#trials thead").replaceChildren(row);
}

async function loadTrials() {
  const query = new URLSearchParams({ sort: table.sort, order: table.order, limit: table.limit, offset: table.offset });
  if (table.state) query.set("state", table.state);
  const page = await api("/studies/" + Q + "/table?" + query);
  const rows = page.items.map((t) => el("tr", { "data-trial": t.number, "data-state": t.state },
    ...columns.map((c) => {
      const v = c.cell(t);
      return el("td", { class: c.num ? "num" : "", "data-col": c.key }, v);
    })));
  document.querySelector("#trials tbody").replaceChildren(...rows);
  for (const th of document.querySelectorAll("#trials th")) {
    th.classList.toggle("sorted", th.dataset.sort === table.sort);
    th.classList.toggle("desc", th.dataset.sort === table.sort && table.order === "desc");
  }
  const last = Math.min(page.offset + page.limit, page.total);
  document.getElementById("page-info").textContent =
    page.total ? page.offset + 1 + "–" + last + " of " + page.total : "no trials";
  document.getElementById("prev").disabled = page.offset === 0;
  document.getElementById("next").disabled = last >= page.total;
}

function buildEnqueue(s) {
  const fields = Object.entries(s.spec.search_space).map(([name, p]) => {
    let input;
    if (p.type === "categorical") {
      input = el("select", { name }, el("option", { value: "", text: "(sample)" }),
        ...p.choices.map((c) => el("option", { value: JSON.stringify(c), text: String(c) })));
    } else {
      input = el("input", { name, type: "number", step: "any", min: p.low, max: p.high, placeholder: p.low + " … " + p.high });
    }
    return el("label", {}, name, input);
  });
  document.getElementById("enqueue-fields").replaceChildren(...fields);
  document.getElementById("enqueue-form").onsubmit = async (event) => {
    event.preventDefault();
    const params = {};
    for (const input of event.target.querySelectorAll("[name]")) {
      if (input.value === "") continue;
      params[input.name] = input.tagName === "SELECT" ? JSON.parse(input.value) : Number(input.value);
    }
    const msg = document.getElementById("enqueue-msg");
    try {
      const trial = await api("/studies/" + Q + "/trials", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ params }),
      });
      msg.textContent = "Enqueued trial #" + trial.number;
      msg.className = "muted";
    } catch (error) {
      msg.textContent = error.message;
      msg.className = "error";
    }
  };
}

function buildCharts(s) {
  const multi = s.spec.objectives.length > 1;
  const box = document.getElementById("charts");
  const observer = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      const chart = charts.get(entry.target.dataset.kind);
      chart.visible = entry.isIntersecting;
      if (chart.visible) loadChart(chart);
    }
  }, { rootMargin: "200px" });
  for (const [kind, title] of CHARTS) {
    if (kind === "pareto" && !multi) continue;
    if (kind === "intermediate" && multi) continue;
    const node = el("div", { class: "chart", id: "chart-" + kind });
    const note = el("div", { class: "note", text: "Loading…" });
    const wrap = el("div", { class: "chart-box", "data-kind": kind }, el("h2", { text: title }), note, node);
    box.append(wrap);
    charts.set(kind, { kind, node, note, version: -1, busy: false, last: 0, cost: 0, visible: false });
    observer.observe(wrap);
  }
}

async function loadChart(chart) {
  if (chart.busy || !summary || chart.version === summary.version) return;
  /* Big studies: redraw a chart at most every few times its own drawing cost. */
  if (Date.now() - chart.last < Math.max(1500, chart.cost * 4)) return;
  chart.busy = true;
  const version = summary.version;
  const started = performance.now();
  try {
    const figure = await api("/studies/" + Q + "/charts/" + chart.kind);
    chart.note.hidden = true;
    chart.node.hidden = false;
    await drawFigure(chart.node, figure);
    chart.node.dataset.drawn = "1";
  } catch (error) {
    chart.note.textContent = error.status === 409 ? error.message.replace(/^\w+: /, "") : "Error: " + error.message;
    chart.note.hidden = false;
    chart.node.hidden = true;
  } finally {
    chart.version = version;
    chart.cost = performance.now() - started;
    chart.last = Date.now();
    chart.busy = false;
  }
}

async function refresh() {
  const s = await api("/studies/" + Q);
  const changed = !summary || s.version !== summary.version || s.state !== summary.state;
  const first = !summary;
  summary = s;
  if (first) {
    buildColumns(s);
    buildEnqueue(s);
    buildCharts(s);
  }
  if (changed) {
    renderSummary(s);
    await loadTrials();
  }
  if (first) {
    document.body.dataset.ready = "1";
    performance.mark("hposvc-interactive");
  }
  for (const chart of charts.values()) if (chart.visible) loadChart(chart);
}

for (const button of document.querySelectorAll("[data-action]")) {
  button.addEventListener("click", async () => {
    const error = document.getElementById("study-error");
    try {
      await api("/studies/" + Q + "/actions", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ action: button.dataset.action }),
      });
      error.hidden = true;
      await refresh();
    } catch (e) {
      error.textContent = e.message;
      error.hidden = false;
    }
  });
}
for (const fmt of ["csv", "json"]) {
  document.getElementById("btn-" + fmt).addEventListener("click", () =>
    download("/studies/" + Q + "/export?format=" + fmt, NAME + "-trials." + fmt).catch((e) => {
      const error = document.getElementById("study-error");
      error.textContent = e.message;
      error.hidden = false;
    }));
}
document.getElementById("trial-state").addEventListener("change", (event) => {
  table.state = event.target.value;
  table.offset = 0;
  loadTrials();
});
document.getElementById("prev").addEventListener("click", () => {
  table.offset = Math.max(0, table.offset - table.limit);
  loadTrials();
});
document.getElementById("next").addEventListener("click", () => {
  table.offset += table.limit;
  loadTrials();
});
poll(refresh, 500);
