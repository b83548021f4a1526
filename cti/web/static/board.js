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
  }
  refresh();
  setInterval(refresh, 10000);
})();
