// The live board: refresh the figures every 10 seconds without reloading the page.
"use strict";
(function () {
  const { api, t, when } = window.bereik;
  // Colour is never the only signal: a shape for the eye, a word for a screen reader.
  function mark(td, symbol, words) {
    const shape = document.createElement("span");
    shape.className = "mark";
    shape.setAttribute("aria-hidden", "true");
    shape.textContent = symbol;
    const text = document.createElement("span");
    text.className = "sr-only";
    text.textContent = words;
    td.append(shape, text);
  }
  async function refresh() {
    try {
      const data = await api("GET", "/api/board");
      for (const row of data.teams) {
        const tr = document.querySelector('#board tr[data-team="' + row.team + '"]');
        if (!tr) continue;
        for (const w of data.windows) {
          const td = tr.querySelector('td[data-window="' + w + '"]');
          const v = row.norm[w];
          const met = v !== null && v >= 0.9;
          td.textContent = v === null ? "–" : Math.round(v * 100) + " %";
          if (v !== null) mark(td, met ? " ✓" : " ▼", t(met ? "at norm" : "below norm"));
          td.className = "norm " + (v === null ? "" : met ? "ok" : "err");
        }
        tr.querySelector(".waiting").textContent = Math.round(data.waiting[row.team] || 0);
        tr.querySelector(".open").textContent = row.open;
        const overdue = tr.querySelector(".overdue-count");
        overdue.textContent = row.overdue;
        if (row.overdue) mark(overdue, " !", t("overdue"));
        overdue.className = "overdue-count " + (row.overdue ? "err" : "");
      }
      if (data.queue) queueRow(data.queue);
      if (data.first_line) firstLine(data.first_line);
      if (data.abandoned) gaveUp(data.abandoned);
      partsLine(data.down || []);
      document.getElementById("board-at").textContent = when(data.at);
    } catch (err) {
      document.getElementById("board-at").textContent = err.message;
    }
  }
  // The status line names a part of the exchange that is down (the supervisor restarts it).
  function partsLine(down) {
    const line = document.getElementById("board-status");
    if (!line) return;
    line.textContent = "";
    if (down.length) {
      const shape = document.createElement("span");
      shape.className = "mark";
      shape.setAttribute("aria-hidden", "true");
      shape.textContent = "! ";
      line.append(shape, t("parts down", { parts: down.join(", ") }));
    } else {
      line.textContent = t("parts up");
    }
    line.className = down.length ? "flash err" : "muted";
  }
  function queueRow(q) {
    const set = (key, text) => {
      const td = document.querySelector('#queue-row td[data-q="' + key + '"]');
      if (td) td.textContent = text;
    };
    const d = q.today;
    set("waiting", q.waiting);
    set("longest", Math.round(q.longest_wait_seconds) + " s");
    for (const [state, n] of Object.entries(q.agents_by_state)) set("agents-" + state, n);
    set("offered", d.offered);
    set("answered", d.answered);
    set("abandoned", (d.abandoned - d.short_abandoned) + " (+" + d.short_abandoned + " " + window.bereik.t("short") + ")");
    set("level", d.service_level === null ? "–" : Math.round(d.service_level * 100) + " %");
    set("asa", d.asa_seconds === null ? "–" : Math.round(d.asa_seconds) + " s");
    set("vhold", d.callbacks + " / " + d.callbacks_made + " / " + d.callbacks_reached);
    set("needed", q.agents_needed === null ? "–" : q.agents_needed);
    agentRows(q.agents);
  }
  // Per agent: the state, the pause reason, how long in that state (text only).
  function duration(seconds) {
    if (seconds === null) return "";
    return seconds < 60 ? seconds + " s" : Math.floor(seconds / 60) + " min";
  }
  function agentRows(agents) {
    for (const a of agents) {
      const tr = document.querySelector('#queue-agents tr[data-agent="' + a.extension + '"]');
      if (!tr) continue;
      tr.querySelector('td[data-a="state"]').textContent = t("agent " + a.state);
      tr.querySelector('td[data-a="reason"]').textContent = a.reason_label;
      tr.querySelector('td[data-a="seconds"]').textContent = duration(a.seconds);
      const button = tr.querySelector("button.agent-sign-out");
      if (button) button.hidden = a.state === "signed_out";
    }
  }
  // A supervisor signs out an agent who went home signed in: the same change as the
  // agent's own (stored, audited, pushed to the line).
  const agentsTable = document.getElementById("queue-agents");
  if (agentsTable) {
    agentsTable.addEventListener("click", async (event) => {
      const button = event.target.closest("button.agent-sign-out");
      if (!button) return;
      const name = button.closest("tr").querySelector("th").textContent;
      const line = document.getElementById("queue-agents-status");
      button.disabled = true;
      try {
        await api("POST", "/api/agent/state", { extension: button.dataset.extension, action: "sign_out" });
        line.textContent = t("agent signed out by you", { name });
        line.className = "flash ok";
        await refresh();
      } catch (err) {
        line.textContent = err.message;
        line.className = "flash err";
      } finally {
        button.disabled = false;
      }
    });
  }
  function firstLine(fl) {
    for (const [team, f] of Object.entries(fl.teams)) {
      const tr = document.querySelector('#first-line tr[data-team="' + team + '"]');
      if (!tr) continue;
      const set = (key, text) => {
        const td = tr.querySelector('td[data-f="' + key + '"]');
        if (td) td.textContent = text;
      };
      const share = tr.querySelector('td[data-f="share"]');
      const met = f.share !== null && f.share >= fl.target;
      share.textContent = f.share === null ? "–" : Math.round(f.share * 100) + " %";
      if (f.share !== null) mark(share, met ? " ✓" : " ▼", t(met ? "at target" : "below target"));
      share.className = f.share === null ? "" : met ? "ok" : "err";
      set("answered", f.answered);
      set("passed_on", f.passed_on);
      set("hoppers", f.hoppers);
      set("repeat", f.repeat_callers + " / " + f.callers);
      set("transfers_in", f.transfers_in);
    }
  }
  // Today's callers who gave up waiting: the rows are rebuilt from the answer (text only,
  // never markup from the server), with the links to the hopper and the journey.
  function gaveUp(ab) {
    const list = document.getElementById("gave-up-list");
    if (!list) {
      // The page was made before the first one gave up (no table yet): reload once.
      if (ab.callers.length) location.reload();
      return;
    }
    document.getElementById("gave-up-total").textContent = ab.total;
    const body = list.querySelector("tbody");
    const link = (href, text) => {
      const a = document.createElement("a");
      a.href = href;
      a.textContent = text;
      return a;
    };
    const rows = ab.callers.map((c) => {
      const tr = document.createElement("tr");
      tr.dataset.call = c.call;
      const cells = [c.caller, c.at, Math.round(c.wait_seconds) + " s"];
      for (const [i, text] of cells.entries()) {
        const td = document.createElement("td");
        td.dataset.a = ["caller", "at", "waited"][i];
        td.textContent = text;
        tr.append(td);
      }
      const hopper = document.createElement("td");
      hopper.dataset.a = "hopper";
      if (c.hopper) hopper.append(link("/team/hoppers/" + c.hopper, t("callback request") + " " + c.hopper));
      else hopper.textContent = ab.callback ? t("callback coming") : "–";
      const journey = document.createElement("td");
      journey.append(link("/calls/" + encodeURIComponent(c.call) + "/journey", t("journey")));
      tr.append(hopper, journey);
      return tr;
    });
    body.replaceChildren(...rows);
  }
  refresh();
  setInterval(refresh, 10000);
})();
