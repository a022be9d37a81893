/* Trial page: parameters, metrics, learning curve, why it ended, worker, attempts, downloads. */
"use strict";
const ID = PAGE.trial;
let objectives = null;
let lastSeen = null;

function kv(rows) {
  return rows.map(([k, v]) => el("tr", {}, el("td", { text: k }), el("td", { text: v })));
}

function why(t) {
  const a = t.user_attrs || {};
  if (t.state === "pruned") return "Pruned at epoch " + (t.pruned_step ?? t.last_step ?? "?") + " by the server's pruner.";
  if (t.state === "fail") return "Failed" + (a.stop_reason ? ": " + a.stop_reason : "") + ". The traceback is below.";
  if (t.state === "running") return "Running on worker " + t.worker_id + (t.last_step !== null ? ", last report at epoch " + t.last_step : "") + ".";
  if (t.state === "waiting") return "Waiting for a worker" + (t.retry_of ? " (retry of trial " + t.retry_of + ")" : "") + ".";
  if (a.stopped === "early_stopped") {
    return "Early-stopped at epoch " + (a.stop_epoch ?? "?") + (a.stop_reason ? ": " + a.stop_reason : "") + ".";
  }
  if (a.stopped === "pruned") return "Pruned at epoch " + (a.stop_epoch ?? "?") + ".";
  return "Completed" + (a.epochs_run ? " after " + a.epochs_run + " epochs" : "") + ".";
}

async function drawCurve(t) {
  const node = document.getElementById("chart-curve");
  const steps = t.intermediate_values.map((p) => p.step);
  const values = t.intermediate_values.map((p) => p.value);
  const name = objectives ? objectives[0].name : "value";
  const data = [{ x: steps, y: values, mode: "lines+markers", name }];
  if (t.state === "pruned" && steps.length) {
    data.push({ x: [steps.at(-1)], y: [values.at(-1)], mode: "markers", name: "pruned here",
      marker: { symbol: "x", size: 14, color: "#d62728" } });
  }
  const stopEpoch = (t.user_attrs || {}).stop_epoch;
  if ((t.user_attrs || {}).stopped === "early_stopped" && steps.length) {
    data.push({ x: [steps.at(-1)], y: [values.at(-1)], mode: "markers", name: "early-stopped (epoch " + stopEpoch + ")",
      marker: { symbol: "diamond", size: 12, color: "#ff7f0e" } });
  }
  await drawFigure(node, {
    data,
    layout: {
      title: { text: "Trial " + t.number + ": " + name + " per epoch" },
      xaxis: { title: { text: "epoch" } }, yaxis: { title: { text: name } },
      margin: { l: 50, r: 20, t: 50, b: 40 }, legend: { orientation: "h" },
    },
  });
  node.dataset.drawn = "1";
}

function render(t) {
  document.title = "Trial " + t.number + " of " + t.study + " · hposvc";
  const title = document.getElementById("trial-title");
  title.replaceChildren("Trial #" + t.number + " of ", el("a", { href: "/studies/" + encodeURIComponent(t.study), text: t.study }));
  const state = document.getElementById("trial-state");
  state.className = "state s-" + t.state;
  state.textContent = t.state;
  document.getElementById("trial-why").textContent = why(t);
  const a = t.user_attrs || {};
  const cards = [
    ["Worker", t.worker_id !== null ? "#" + t.worker_id + (a.device ? " · " + a.device : "") + (a.slot !== undefined ? " · slot " + a.slot : "") : "–"],
    ["Attempt", t.attempt + (t.retry_of ? " (retry of " + t.retry_of + ")" : "")],
    ["Started", fmtTime(t.started_at)], ["Finished", fmtTime(t.finished_at)],
    ["Duration", fmtDuration(t.started_at, t.finished_at)],
    ["Epochs run", fmtNum(a.epochs_run ?? t.last_step)],
    ["Train time", a.train_seconds !== undefined ? fmtNum(a.train_seconds) + " s" : "–"],
  ];
  if (a.resumed_from_epoch !== undefined) cards.push(["Resumed from epoch", fmtNum(a.resumed_from_epoch)]);
  document.getElementById("trial-cards").replaceChildren(...cards.map(([k, v]) =>
    el("div", { class: "card" }, el("div", { class: "k", text: k }), el("div", { class: "v", text: v }))));
  document.getElementById("params").replaceChildren(...kv(Object.entries(t.params).map(([k, v]) => [k, fmtNum(v)])));
  const metricRows = (t.values || []).map((v, i) => [(objectives ? objectives[i].name : "value " + i) + " (objective)", fmtNum(v)]);
  const metrics = a.metrics || {};
  for (const k of Object.keys(metrics).sort()) metricRows.push([k, fmtNum(metrics[k])]);
  document.getElementById("metrics").replaceChildren(...(metricRows.length ? kv(metricRows) : kv([["–", "no metric yet"]])));
  const tb = document.getElementById("tb-panel");
  tb.hidden = !t.fail_reason;
  document.getElementById("traceback").textContent = t.fail_reason || "";
  const lastIv = t.intermediate_values.at(-1);
  document.getElementById("last-report").textContent = lastIv
    ? t.intermediate_values.length + " reports; last: epoch " + lastIv.step + " = " + fmtNum(lastIv.value)
    : "No intermediate value reported.";
  if (t.intermediate_values.length) drawCurve(t);
  document.body.dataset.ready = "1";
}

async function refresh() {
  const t = await api("/trials/" + ID);
  if (!objectives) {
    objectives = (await api("/studies/" + encodeURIComponent(t.study))).spec.objectives;
  }
  const key = JSON.stringify([t.state, t.intermediate_values.length, t.finished_at, t.values, t.user_attrs]);
  if (key !== lastSeen) {
    lastSeen = key;
    render(t);
  }
}

for (const kind of ["checkpoint", "model"]) {
  document.getElementById("dl-" + kind).addEventListener("click", () =>
    download("/trials/" + ID + "/artifacts/" + kind, "trial-" + ID + "-" + kind + ".pt").catch((e) => {
      const error = document.getElementById("trial-error");
      error.textContent = kind + ": " + e.message;
      error.hidden = false;
    }));
}
poll(refresh, 500);
