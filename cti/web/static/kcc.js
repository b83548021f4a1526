// The KCC screen: the live call popup (server-sent events), the searchable routing table,
// transfer buttons, registering the question category, and creating a hopper.
"use strict";
(function () {
  const { t, api, status, when } = window.bereik;
  const panel = document.getElementById("call-panel");
  const popup = document.getElementById("popup");
  const idle = document.getElementById("idle");
  const statusLine = document.getElementById("kcc-status");
  let current = null;

  function show(call) {
    if (call.state === "ended") {
      if (current && current.channel === call.channel) {
        popup.classList.remove("ringing");
        document.getElementById("call-state").textContent = t("ended");
        current = Object.assign({}, current, { state: "ended" });
      }
      return;
    }
    const fresh = !current || current.linkedid !== call.linkedid;
    current = call;
    popup.hidden = false;
    if (idle) idle.hidden = true;
    popup.classList.toggle("ringing", call.state === "ringing");
    document.getElementById("call-state").textContent = t(call.state);
    document.getElementById("call-number").textContent = call.caller || t("anonymous");
    document.getElementById("call-name").textContent = call.callback_since
      ? t("callback from line", { wait: minutesSeconds(Date.now() / 1000 - call.callback_since) })
      : call.caller_name && call.caller_name !== call.caller ? call.caller_name : "";
    document.getElementById("hopper-caller").value = call.caller || "";
    // The journey of this call, once answered (what the exchange knows of it so far).
    const journey = document.getElementById("call-journey");
    journey.href = "/calls/" + encodeURIComponent(call.linkedid) + "/journey";
    journey.hidden = call.state !== "answered";
    // A quality recording, if this call has one, is stopped at the agent's word.
    document.getElementById("stop-recording").hidden = call.state !== "answered";
    statusLine.hidden = true;
    if (fresh && call.caller) loadHistory(call);
    if (fresh) loadQuestion(call);
  }

  // A virtual hold's callback: the citizen's spoken question, played in the browser through
  // the recordings route (audited there); loaded only when play is pressed.
  async function loadQuestion(call) {
    const box = document.getElementById("callback-question");
    const audio = document.getElementById("callback-question-audio");
    box.hidden = true;
    audio.removeAttribute("src");
    if (!call.callback_id) return;
    try {
      const data = await api("GET", "/api/virtual-holds/" + call.callback_id + "/recordings");
      if (!data.recordings.length || !current || current.linkedid !== call.linkedid) return;
      audio.src = data.recordings[data.recordings.length - 1].url;
      box.hidden = false;
    } catch (err) {
      status(statusLine, err.message, false);
    }
  }

  // The citizen's total wait since first coming to the line, as m:ss (a callback often
  // comes within minutes, so whole minutes would mostly say 0).
  function minutesSeconds(seconds) {
    const whole = Math.max(0, Math.round(seconds));
    return Math.floor(whole / 60) + ":" + String(whole % 60).padStart(2, "0");
  }

  async function loadHistory(call) {
    const contacts = document.querySelector("#contacts tbody");
    const hoppers = document.getElementById("call-hoppers");
    contacts.innerHTML = "";
    hoppers.innerHTML = "";
    try {
      const data = await api("GET", "/api/callers/" + encodeURIComponent(call.caller) +
        "?call=" + encodeURIComponent(call.linkedid));
      for (const c of data.contacts) {
        const row = contacts.insertRow();
        for (const v of [when(c.at), c.team || c.route, c.category, c.outcome]) row.insertCell().textContent = v || "";
      }
      document.getElementById("no-contacts").hidden = data.contacts.length > 0;
      for (const h of data.hoppers) {
        const li = document.createElement("li");
        li.textContent = "#" + h.id + " " + h.team_name + " · " + t("deadline") + " " + when(h.deadline) +
          (h.note ? " · " + h.note : "");
        hoppers.appendChild(li);
      }
      document.getElementById("no-hoppers").hidden = data.hoppers.length > 0;
    } catch (err) {
      status(statusLine, err.message, false);
    }
  }

  function connect() {
    if (!panel.dataset.extension) return;
    const state = document.getElementById("stream-state");
    const source = new EventSource("/events");
    source.addEventListener("call", (e) => show(JSON.parse(e.data)));
    source.onopen = () => { state.textContent = "● " + t("live"); };
    source.onerror = () => { state.textContent = t("disconnected"); };
  }

  // Routing table: filter as you type (category or team name).
  const search = document.getElementById("route-search");
  search.addEventListener("input", () => {
    const words = search.value.toLowerCase().trim().split(/\s+/).filter(Boolean);
    for (const row of document.querySelectorAll("#routing tbody tr")) {
      row.hidden = !words.every((w) => row.dataset.search.includes(w));
    }
  });

  for (const button of document.querySelectorAll(".transfer-btn")) {
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        await api("POST", "/api/agent/transfer", { team: button.dataset.team });
        status(statusLine, t("transferred", { team: button.dataset.name }), true);
        // Pre-fill the hopper form, should the agent need one after all.
        document.getElementById("hopper-team").value = button.dataset.team;
      } catch (err) {
        status(statusLine, err.message, false);
      } finally {
        button.disabled = false;
      }
    });
  }

  const stopRecording = document.getElementById("stop-recording");
  stopRecording.addEventListener("click", async () => {
    stopRecording.disabled = true;
    try {
      const done = await api("POST", "/api/agent/recording/stop", {});
      status(statusLine, t(done.stopped ? "recording stopped" : "not recorded"), true);
      stopRecording.hidden = true;
    } catch (err) {
      status(statusLine, err.message, false);
    } finally {
      stopRecording.disabled = false;
    }
  });

  for (const button of document.querySelectorAll(".category-btn")) {
    button.addEventListener("click", async () => {
      try {
        await api("POST", "/api/agent/category", {
          category: button.dataset.category,
          call: current ? current.linkedid : "",
        });
        status(statusLine, t("category saved") + " " + button.dataset.category, true);
        document.getElementById("hopper-category").value = button.dataset.category;
      } catch (err) {
        status(statusLine, err.message, false);
      }
    });
  }

  // Choosing a category picks its team for the hopper.
  document.getElementById("hopper-category").addEventListener("change", (e) => {
    const option = e.target.selectedOptions[0];
    if (option && option.dataset.team) document.getElementById("hopper-team").value = option.dataset.team;
  });

  document.getElementById("hopper-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const form = new FormData(e.target);
    try {
      const data = await api("POST", "/api/hoppers", {
        caller: form.get("caller") || (current ? current.caller : ""), team: form.get("team"),
        category: form.get("category"), note: form.get("note"),
        call_uniqueid: current ? current.linkedid : "",
      });
      const team = document.getElementById("hopper-team").selectedOptions[0].textContent;
      const created = t("hopper created", { id: data.id, team });
      // The request is kept, but without this call's recorded question and outcome
      // (call_not_linked): the agent must know, not see a plain success.
      if (data.call_not_linked) status(statusLine, created + " " + t("call not linked"), false);
      else status(statusLine, created, true);
      document.getElementById("hopper-note").value = "";
    } catch (err) {
      status(statusLine, err.message, false);
    }
  });

  connect();
})();
