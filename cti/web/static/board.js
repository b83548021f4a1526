// The live board: refresh the figures every 10 seconds without reloading the page.
"use strict";
(function () {
  const { api, when } = window.bereik;
  async function refresh() {
    try {
      const data = await api("GET", "/api/board");
      for (const row of data.teams) {
        const tr = document.querySelector('#board tr[data-team="' + row.team + '"]');
        if (!tr) continue;
        for (const w of data.windows) {
          const td = tr.querySelector('td[data-window="' + w + '"]');
          const v = row.norm[w];
          td.textContent = v === null ? "–" : Math.round(v * 100) + " %";
          td.className = "norm " + (v === null ? "" : v >= 0.9 ? "ok" : "err");
        }
        tr.querySelector(".waiting").textContent = Math.round(data.waiting[row.team] || 0);
        tr.querySelector(".open").textContent = row.open;
        const overdue = tr.querySelector(".overdue-count");
        overdue.textContent = row.overdue;
        overdue.className = "overdue-count " + (row.overdue ? "err" : "");
      }
      document.getElementById("board-at").textContent = when(data.at);
    } catch (err) {
      document.getElementById("board-at").textContent = err.message;
    }
  }
  refresh();
  setInterval(refresh, 10000);
})();
