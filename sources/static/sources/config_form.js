// The feedback config form shows only what the chosen method uses: a JSON
// config has no SOAP, batch or WS-Security fields, a batch config no URL,
// HTTP method, sync or answer reading. Each fieldset's classes name the
// methods it is for ("for-methods json xml ..."). Without this script every
// section shows, and the server still checks what applies.
(() => {
  "use strict";
  const method = document.getElementById("id_method");
  if (!method) return;
  const rows = (names) =>
    names.flatMap((name) => Array.from(document.querySelectorAll(`.form-row.field-${name}, .fieldBox.field-${name}`)));
  const httpRows = rows(["url", "sync", "headers"]);
  const verbRows = rows(["http_method"]);
  const wsseRows = rows(["wsse_password_digest"]);
  const show = () => {
    const chosen = method.value;
    document.querySelectorAll("fieldset.for-methods").forEach((fieldset) => {
      fieldset.hidden = Boolean(chosen) && !fieldset.classList.contains(chosen);
    });
    httpRows.forEach((row) => { row.hidden = chosen === "batch"; });
    verbRows.forEach((row) => { row.hidden = chosen === "batch" || chosen === "soap"; });
    wsseRows.forEach((row) => { row.hidden = chosen !== "soap"; });
  };
  method.addEventListener("change", show);
  show();
})();
