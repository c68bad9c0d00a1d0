// "Recompute now": post the form in the background, then poll the run's JSON status until it ends.
// A run that looks stuck (its worker died, or no worker took it) reveals the "Release it" form.
// Without JS the forms post normally and the redirect carries a status message.
(function () {
  "use strict";
  var form = document.querySelector("[data-recompute]");
  if (!form || !window.fetch) { return; }
  var button = form.querySelector("button");
  var progress = form.querySelector(".run-progress");
  var release = document.querySelector("[data-release]");

  function showStuck(run) {
    if (!release) { return; }
    release.hidden = !run.stuck;
    if (run.stuck) {
      release.action = run.release_url;
      release.querySelector(".run-stuck").textContent =
        "KPI run #" + run.id + " looks stuck: " + run.stuck_reason + "; its worker may have died.";
    }
  }

  function poll(url) {
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (run) {
        progress.textContent = "KPI run #" + run.id + " is " + run.status_display.toLowerCase() + "…";
        showStuck(run);
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

  function submitInBackground(target, what) {
    target.addEventListener("submit", function (event) {
      event.preventDefault();
      button.disabled = true;
      if (release) { release.hidden = true; }
      progress.textContent = what;
      fetch(target.action, {
        method: "POST",
        body: new FormData(target),
        credentials: "same-origin",
        headers: { "X-Requested-With": "fetch", Accept: "application/json" },
      })
        .then(function (r) { return r.json(); })
        .then(function (run) {
          if (run.error) { progress.textContent = run.error; button.disabled = false; return; }
          poll(run.status_url);
        })
        .catch(function () { target.submit(); });
    });
  }

  submitInBackground(form, "Queueing a recompute…");
  if (release) { submitInBackground(release, "Releasing the stuck run and queueing a recompute…"); }
  if (form.dataset.runUrl) { poll(form.dataset.runUrl); }
})();
