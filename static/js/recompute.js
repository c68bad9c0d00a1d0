// "Recompute now": post the form in the background, then poll the run's JSON status until it ends.
// Without JS the form posts normally and the redirect carries a status message.
(function () {
  "use strict";
  var form = document.querySelector("[data-recompute]");
  if (!form || !window.fetch) { return; }
  var button = form.querySelector("button");
  var progress = form.querySelector(".run-progress");

  function poll(url) {
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (run) {
        progress.textContent = "KPI run #" + run.id + " is " + run.status_display.toLowerCase() + "…";
        if (!run.done) { window.setTimeout(function () { poll(url); }, 2000); return; }
        if (run.status === "succeeded") {
          progress.textContent = "KPI run #" + run.id + " finished: reloading the numbers…";
          window.setTimeout(function () { window.location.reload(); }, 800);
        } else {
          progress.textContent = "KPI run #" + run.id + " failed: " + (run.error || "see the run in the admin") + ".";
          button.disabled = false;
        }
      })
      .catch(function () { progress.textContent = "Lost contact with the server; reload to see the run's status."; });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    button.disabled = true;
    progress.textContent = "Queueing a recompute…";
    fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      credentials: "same-origin",
      headers: { "X-Requested-With": "fetch", Accept: "application/json" },
    })
      .then(function (r) { return r.json(); })
      .then(function (run) { poll(run.status_url); })
      .catch(function () { form.submit(); });
  });

  if (form.dataset.runUrl) { poll(form.dataset.runUrl); }
})();
