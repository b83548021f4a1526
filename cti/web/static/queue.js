// The agent's status in the KCC's waiting line (only when the KCC works as a queue):
// sign in, pause with a reason, ready (also ends the wrap-up), sign out.
"use strict";
(function () {
  const { api, t, status } = window.bereik;
  const card = document.getElementById("agent-state");
  if (!card) return;
  const now = document.getElementById("agent-state-now");
  const why = document.getElementById("agent-state-reason");
  const reasons = document.getElementById("pause-reason");
  const message = document.getElementById("agent-state-status");
  let labels = {};
  function show(data) {
    labels = data.reasons || labels;
    now.textContent = t("agent " + data.state);
    why.textContent = data.state === "paused" ? (labels[data.reason] || data.reason) : "";
    if (!reasons.options.length) {
      for (const [id, label] of Object.entries(labels)) {
        if (id === "ring_out") continue;
        reasons.add(new Option(label, id));
      }
    }
  }
  async function load() {
    try {
      show(await api("GET", "/api/agent/state"));
      card.hidden = false;
    } catch (err) {
      card.hidden = true;  // no waiting line, or not a KCC extension
    }
  }
  for (const button of card.querySelectorAll(".state-btn")) {
    button.addEventListener("click", async () => {
      const body = { action: button.dataset.action };
      if (body.action === "pause") body.reason = reasons.value;
      try {
        await api("POST", "/api/agent/state", body);
        await load();
      } catch (err) {
        status(message, err.message, false);
      }
    });
  }
  load();
  setInterval(load, 5000);
})();
