/* Workers page: online/offline, host, devices and slots, current trials, last heartbeat. */
"use strict";

async function refresh() {
  const workers = await api("/workers");
  const rows = workers.map((w) => el("tr", { "data-worker": w.id },
    el("td", { text: w.name + " (#" + w.id + ")" }),
    el("td", {}, badge(w.online ? "online" : "offline")),
    el("td", { text: w.host }),
    el("td", { text: w.devices.join(", ") || "–" }),
    el("td", { class: "num", text: w.running_trials.length + " / " + w.slots }),
    el("td", {}, ...(w.running_trials.length ? w.running_trials.flatMap((id, i) => [
      i ? ", " : "", el("a", { href: "/trials/" + id, text: "trial " + id })]) : ["–"])),
    el("td", { title: fmtTime(w.last_heartbeat_at), text: ago(w.last_heartbeat_at) })));
  document.querySelector("#workers tbody").replaceChildren(...rows);
  document.getElementById("empty").hidden = workers.length > 0;
  document.body.dataset.ready = "1";
}

poll(refresh, 1000);
