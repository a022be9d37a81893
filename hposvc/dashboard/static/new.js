/* New study: paste or upload a YAML/JSON spec; the server's errors are shown by field. */
"use strict";
const EXAMPLE = `# A study spec (YAML or JSON). Every field is explained in the README.
name: digits-mlp-${new Date().toISOString().slice(0, 10)}-${Math.random().toString(36).slice(2, 6)}
objectives:
  - {name: val_accuracy, direction: maximize}
search_space:
  lr: {type: float, low: 1.0e-4, high: 0.1, log: true}
  layers: {type: int, low: 1, high: 3}
  optimizer: {type: categorical, choices: [sgd, adam]}
  momentum: {type: float, low: 0.0, high: 0.99, when: {optimizer: [sgd]}}
sampler: {name: tpe, seed: 1}
pruner: {name: median, options: {n_warmup_steps: 2}}
budget: {max_trials: 30, max_concurrent: 2, max_retries: 1}
training: {dataset: digits, model: mlp, max_epochs: 10}
`;
const spec = document.getElementById("spec");
const format = document.getElementById("spec-format");
spec.value = EXAMPLE;

/* The line of the spec where a dotted location (search_space.lr.low) is written. */
function lineOf(loc) {
  const lines = spec.value.split("\n");
  let from = 0;
  let found = -1;
  for (const part of loc) {
    if (/^\d+$/.test(part)) continue;
    const re = new RegExp("(^|[\\s{,\"'])" + part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&") + "[\"']?\\s*:");
    const at = lines.findIndex((line, i) => i >= from && re.test(line));
    if (at < 0) break;
    found = at;
    from = at;
  }
  return found;
}

function showErrors(body) {
  let items = body.errors;
  if (!items || !items.length) {
    items = String(body.detail || "invalid spec").split("; ").map((part) => {
      const m = part.match(/^([\w.\-[\]]+): ([\s\S]*)$/);
      return m ? { loc: m[1].split("."), msg: m[2] } : { loc: [], msg: part };
    });
  }
  const list = document.getElementById("field-errors");
  list.replaceChildren(...items.map((item) => {
    const loc = (item.loc || []).map(String);
    const line = lineOf(loc);
    const li = el("li", { "data-loc": loc.join(".") },
      line >= 0 ? "line " + (line + 1) + " · " : "",
      el("code", { text: loc.join(".") || "spec" }), " " + item.msg);
    if (line >= 0) {
      li.style.cursor = "pointer";
      li.addEventListener("click", () => {
        const lines = spec.value.split("\n");
        const start = lines.slice(0, line).join("\n").length + (line ? 1 : 0);
        spec.focus();
        spec.setSelectionRange(start, start + lines[line].length);
      });
    }
    return li;
  }));
  const top = document.getElementById("spec-error");
  top.textContent = "The server refused this spec (" + (body.code || "invalid") + "):";
  top.hidden = false;
}

document.getElementById("spec-file").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  if (!file) return;
  spec.value = await file.text();
  format.value = /\.json$/i.test(file.name) ? "json" : "yaml";
});

document.getElementById("new-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  document.getElementById("field-errors").replaceChildren();
  document.getElementById("spec-error").hidden = true;
  const type = format.value === "json" ? "application/json" : "application/yaml";
  try {
    const study = await api("/studies", { method: "POST", headers: { "Content-Type": type }, body: spec.value });
    location.href = "/studies/" + encodeURIComponent(study.name);
  } catch (error) {
    if (error.body && (error.body.detail || error.body.errors)) showErrors(error.body);
    else showErrors({ detail: error.message });
  }
});
document.body.dataset.ready = "1";
