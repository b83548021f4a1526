// Shared helpers: translated texts and JSON calls that carry the CSRF token.
"use strict";
window.bereik = (function () {
  // The texts come as JSON data, not as a script: the Content-Security-Policy runs no
  // inline script.
  const textsElement = document.getElementById("bereik-texts");
  const texts = textsElement ? JSON.parse(textsElement.textContent || "{}") : {};
  // A select that submits its form when changed (no inline onchange handler).
  document.querySelectorAll("select[data-submit-on-change]").forEach((select) => {
    select.addEventListener("change", () => select.form.submit());
  });
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  function t(key, values) {
    let text = texts[key] || key;
    for (const [k, v] of Object.entries(values || {})) text = text.replace("{" + k + "}", v);
    return text;
  }
  async function api(method, url, body) {
    const response = await fetch(url, {
      method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRF-Token": csrf },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = {};
    try { data = await response.json(); } catch (e) { data = {}; }
    if (!response.ok) throw new Error(data.error || (response.status + " " + response.statusText));
    return data;
  }
  function status(element, text, ok) {
    element.hidden = false;
    element.textContent = text;
    element.className = "flash " + (ok ? "ok" : "err");
  }
  function when(iso) {
    return new Date(iso).toLocaleString(document.documentElement.lang === "en" ? "en-GB" : "nl-NL",
      { dateStyle: "short", timeStyle: "short" });
  }
  return { t, api, status, when };
})();
