// Duplicate warning while typing: asks the portal which other partners claim the domain.
// The "Check for duplicates" button does the same without JS.
(function () {
  "use strict";
  var form = document.getElementById("register-form");
  if (!form || !window.fetch) { return; }
  var domain = form.querySelector("[name=domain]");
  var slot = document.getElementById("conflict-warning");
  var errors = document.getElementById("form-errors");
  if (errors) { errors.focus(); }
  var last = "";

  function show(data) {
    if (!data.conflicts.length) {
      slot.innerHTML = '<p class="ok">No other partner claims ' + escapeHtml(data.domain) + ".</p>";
      return;
    }
    var parts = data.conflicts.map(function (c) {
      var text = "registered " + c.submitted_at.slice(0, 10);
      if (c.protection_expires_at) { text += ", protected until " + c.protection_expires_at.slice(0, 10); }
      return "(" + text + ")";
    });
    slot.innerHTML = '<div class="warning"><strong>Possible duplicate:</strong> another partner already claims ' +
      escapeHtml(data.domain) + " " + parts.join("; ") +
      ". You can still submit: a partner manager will review the conflict.</div>";
  }
  function escapeHtml(s) {
    return s.replace(/[&<>"']/g, function (ch) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[ch];
    });
  }
  function check() {
    var value = domain.value.trim();
    if (value === last || value.indexOf(".") < 0) { return; }
    last = value;
    fetch(form.dataset.conflictsUrl + "?domain=" + encodeURIComponent(value), { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(show)
      .catch(function () {});
  }
  domain.addEventListener("change", check);
  domain.addEventListener("blur", check);
})();
