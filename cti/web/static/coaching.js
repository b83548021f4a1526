// The board's coaching table: the calls in progress with an agent that this supervisor or
// team lead may join, each with three buttons (listen, whisper, barge). Rebuilt every few
// seconds from /api/coaching (text only, never markup from the server); a click rings the
// user's own phone, and the status line says so.
"use strict";
(function () {
  const { api, t } = window.bereik;
  const section = document.getElementById("coaching");
  if (!section) return;
  const table = document.getElementById("coaching-calls");
  const body = table.querySelector("tbody");
  const none = document.getElementById("coaching-none");
  const status = document.getElementById("coaching-status");
  const MODES = ["listen", "whisper", "barge"];
  function say(text, ok) {
    status.textContent = text;
    status.className = ok ? "flash ok" : "flash err";
  }
  async function join(call, agent, mode, button) {
    button.disabled = true;
    try {
      const answer = await api("POST", "/api/calls/" + encodeURIComponent(call) + "/coach", { mode });
      say(t("coach ringing", { phone: answer.phone, agent: agent, mode: t("coach " + mode) }), true);
    } catch (err) {
      say(err.message, false);
    } finally {
      button.disabled = false;
    }
  }
  function minutes(seconds) {
    const m = Math.floor(seconds / 60);
    const s = String(seconds % 60).padStart(2, "0");
    return m + ":" + s;
  }
  async function refresh() {
    let data;
    try {
      data = await api("GET", "/api/coaching");
    } catch (err) {
      return; // the board's own refresh shows a lost connection
    }
    // A row whose button has the focus is kept as it is, so a keyboard user never loses it.
    const focused = document.activeElement && body.contains(document.activeElement)
      ? document.activeElement.dataset.call : null;
    const rows = data.calls.map((c) => {
      if (focused === c.call) {
        const kept = body.querySelector('tr[data-call="' + CSS.escape(c.call) + '"]');
        if (kept) {
          kept.querySelector('td[data-c="since"]').textContent = minutes(c.seconds);
          return kept;
        }
      }
      const tr = document.createElement("tr");
      tr.dataset.call = c.call;
      const who = document.createElement("th");
      who.scope = "row";
      who.textContent = c.name && c.name !== c.agent ? c.name + " (" + c.agent + ")" : c.agent;
      const team = document.createElement("td");
      team.textContent = c.team_name;
      const since = document.createElement("td");
      since.dataset.c = "since";
      since.textContent = minutes(c.seconds);
      const actions = document.createElement("td");
      for (const mode of MODES) {
        const button = document.createElement("button");
        button.type = "button";
        button.dataset.mode = mode;
        button.dataset.call = c.call;
        button.textContent = t("coach " + mode);
        const whose = document.createElement("span");
        whose.className = "sr-only";
        whose.textContent = " " + t("coach at", { agent: c.agent });
        button.append(whose);
        button.addEventListener("click", () => join(c.call, c.agent, mode, button));
        actions.append(button, " ");
      }
      tr.append(who, team, since, actions);
      return tr;
    });
    body.replaceChildren(...rows);
    table.hidden = rows.length === 0;
    none.hidden = rows.length !== 0;
  }
  refresh();
  setInterval(refresh, 3000);
})();
