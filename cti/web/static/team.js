// Group inbox: click-to-call (the callbacks API); the other actions are plain forms.
"use strict";
(function () {
  const { t, api, status } = window.bereik;
  const line = document.getElementById("team-status");
  for (const button of document.querySelectorAll(".callback-btn")) {
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        await api("POST", "/api/hoppers/" + button.dataset.hopper + "/callback", {});
        status(line, t("calling"), true);
      } catch (err) {
        status(line, t("dial failed", { error: err.message }), false);
      } finally {
        button.disabled = false;
      }
    });
  }
})();
