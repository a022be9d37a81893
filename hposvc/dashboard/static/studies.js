/* Studies page: every study with its progress, running trials and best value; live. */
"use strict";
const summaries = new Map();

function studyRow(study) {
  const sum = summaries.get(study.name);
  const counts = (sum && sum.counts) || {};
  const finished = (counts.complete || 0) + (counts.pruned || 0) + (counts.fail || 0);
  const budget = study.spec.budget.max_trials;
  const pct = Math.min(100, (100 * study.budget_used) / budget);
  let best = "–";
  if (sum && sum.best_trial) best = fmtNum(sum.best_trial.values[0]);
  else if (sum && sum.pareto_front) best = sum.pareto_front.length + " on the front";
  return el("tr", { "data-study": study.name },
    el("td", {}, el("a", { href: "/studies/" + encodeURIComponent(study.name), text: study.name })),
    el("td", {}, badge(study.state)),
    el("td", { class: "hide-s", text: study.spec.sampler.name + " / " + study.spec.pruner.name }),
    el("td", {}, el("div", { class: "progress", title: finished + " finished of " + budget },
      el("div", { class: "track" }, el("div", { class: "fill", style: "width:" + pct + "%" })),
      el("span", { class: "muted", text: finished + " / " + budget }))),
    el("td", { class: "num", text: String(counts.running || 0) }),
    el("td", { class: "num", text: best }),
    el("td", { class: "hide-s", text: fmtTime(study.created_at) }));
}

async function refresh() {
  const state = document.getElementById("state-filter").value;
  const page = await api("/studies?limit=200" + (state ? "&state=" + state : ""));
  await Promise.all(page.items.map(async (study) => {
    const known = summaries.get(study.name);
    if (!known || known.version !== study.version || known.state !== study.state) {
      summaries.set(study.name, await api("/studies/" + encodeURIComponent(study.name)));
    }
  }));
  const body = document.querySelector("#studies tbody");
  body.replaceChildren(...page.items.map(studyRow));
  document.getElementById("empty").hidden = page.items.length > 0;
  document.body.dataset.ready = "1";
}

document.getElementById("state-filter").addEventListener("change", refresh);
poll(refresh, 1000);
