// Preview and send-test for a feedback config: posts the change form as it is on
// screen to the preview URL and shows the HTML fragment that comes back.
"use strict";

(function () {
  function init(panel) {
    const form = panel.closest("form");
    const result = panel.querySelector(".config-preview-result");
    const status = panel.querySelector(".config-preview-status");
    const buttons = panel.querySelectorAll("button[data-action]");
    buttons.forEach(function (button) {
      button.addEventListener("click", async function () {
        const data = new FormData(form);
        data.set("_action", button.dataset.action);
        buttons.forEach(function (b) { b.disabled = true; });
        status.textContent = button.dataset.action === "send" ? "Sending…" : "Building…";
        try {
          const response = await fetch(panel.dataset.url, {
            method: "POST",
            body: data,
            credentials: "same-origin",
            headers: { "X-Requested-With": "XMLHttpRequest" },
          });
          if (response.redirected) {
            // fetch follows the redirect to the login page when the session ended.
            result.innerHTML = "<ul class=\"errorlist\"><li>Your session has ended; log in again.</li></ul>";
          } else {
            result.innerHTML = response.ok
              ? await response.text()
              : "<ul class=\"errorlist\"><li>The preview failed (HTTP " + response.status + ").</li></ul>";
          }
          status.textContent = "";
        } catch (error) {
          status.textContent = "The preview could not be reached: " + error;
        } finally {
          buttons.forEach(function (b) { b.disabled = false; });
        }
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".config-preview[data-url]").forEach(init);
  });
})();
