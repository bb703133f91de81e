// Leadback portal: select-all for the deliveries list, confirmations, and the
// import progress poller. Plain DOM, no dependencies; everything works without it.
(function () {
  "use strict";

  function updateCount(form) {
    var out = form.querySelector("[data-selected-count]");
    if (!out) { return; }
    var n = form.querySelectorAll('input[name="event_ids"]:checked').length;
    out.textContent = n ? n + " selected" : "";
  }

  // A form may hold several "select all" boxes (the table's header, and one by
  // the actions for phones, where the header is out of sight): keep them in step.
  var forms = new Set();
  document.querySelectorAll("[data-select-all]").forEach(function (master) {
    forms.add(master.form);
  });
  forms.forEach(function (form) {
    var masters = form.querySelectorAll("[data-select-all]");
    var name = masters[0].getAttribute("data-select-all");
    var boxes = form.querySelectorAll('input[name="' + name + '"]');
    var sync = function () {
      var checked = form.querySelectorAll('input[name="' + name + '"]:checked').length;
      masters.forEach(function (master) {
        master.checked = checked > 0 && checked === boxes.length;
        master.indeterminate = checked > 0 && checked < boxes.length;
      });
      updateCount(form);
    };
    masters.forEach(function (master) {
      master.addEventListener("change", function () {
        boxes.forEach(function (box) { box.checked = master.checked; });
        sync();
      });
    });
    boxes.forEach(function (box) { box.addEventListener("change", sync); });
  });

  // The bulk bar shows only the fields the chosen feedback takes (none until a
  // kind is chosen), so it stays small enough to keep in sight.
  document.querySelectorAll("[data-bulk]").forEach(function (bar) {
    var show = function () {
      var chosen = bar.querySelector('input[name="kind"]:checked');
      var kind = chosen ? chosen.value : "";
      bar.querySelectorAll("[data-for-kind]").forEach(function (part) {
        var kinds = part.getAttribute("data-for-kind").split(" ");
        part.hidden = kinds.indexOf(kind) === -1;
      });
    };
    bar.querySelectorAll('input[name="kind"]').forEach(function (radio) {
      radio.addEventListener("change", show);
    });
    show();
  });

  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
    });
  });

  document.querySelectorAll("[data-select-on-focus]").forEach(function (input) {
    input.addEventListener("focus", function () { input.select(); });
  });

  // Import progress: swap in the server's fragment every second until done.
  var progress = document.querySelector("[data-progress-url]");
  if (progress) {
    var url = progress.getAttribute("data-progress-url");
    var poll = function () {
      fetch(url, { headers: { "X-Requested-With": "fetch" }, credentials: "same-origin" })
        .then(function (response) {
          if (!response.ok) { throw new Error("HTTP " + response.status); }
          return response.text();
        })
        .then(function (html) {
          progress.innerHTML = html;
          var state = progress.querySelector("[data-import-state]");
          var finished = state && state.getAttribute("data-finished") === "true";
          if (!finished) { window.setTimeout(poll, 1000); }
        })
        .catch(function () { window.setTimeout(poll, 3000); });
    };
    var initial = progress.querySelector("[data-import-state]");
    if (!initial || initial.getAttribute("data-finished") !== "true") {
      window.setTimeout(poll, 1000);
    }
  }
})();
