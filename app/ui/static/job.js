// The job page, live: follows the job's event stream (same origin, so the browser sends the dashboard's
// key cookie; EventSource resumes with Last-Event-ID by itself), moves the progress bar from the steps
// the metrics events report against the run's total_steps, lists new events (as text, never HTML),
// redraws the curves now and then, and reloads the page once the job has ended (artifacts, final state).
(function () {
  "use strict";
  const root = document.getElementById("job");
  if (!root || root.dataset.live !== "true") return;

  const bar = root.querySelector("progress.progress");
  const words = root.querySelector(".progress-text");
  const status = document.getElementById("status");
  const live = document.getElementById("live");
  const events = document.getElementById("events");
  const curves = document.getElementById("curves");
  const noCurves = document.getElementById("no-curves");
  const CURVES_EVERY_MS = 3000;
  let step = Number(root.dataset.step) || 0;
  let total = Number(root.dataset.totalSteps) || 0;
  let curvesAt = 0;
  let curvesTimer = null;

  function showProgress() {
    const percent = total ? Math.min(100, Math.floor((100 * step) / total)) : 0;
    bar.value = percent;
    bar.textContent = percent + "%";
    words.textContent = percent + "%" + (total ? " · step " + step + " of " + total : "");
  }

  function redrawCurves() {
    curvesTimer = null;
    curvesAt = Date.now();
    curves.src = root.dataset.curvesUrl + "?at=" + curvesAt;  // a new URL: the browser fetches it again
    curves.hidden = false;
    noCurves.hidden = true;
  }

  function curvesChanged() {
    if (curvesTimer === null) {
      curvesTimer = setTimeout(redrawCurves, Math.max(0, curvesAt + CURVES_EVERY_MS - Date.now()));
    }
  }

  function addEvent(event) {
    const item = document.createElement("li");
    item.className = "level-" + event.level;
    const time = document.createElement("time");
    time.textContent = new Date(event.created_at * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";
    item.append(time, " " + event.message);
    events.prepend(item);
  }

  const stream = new EventSource(root.dataset.eventsUrl);
  stream.onmessage = function (message) {
    const event = JSON.parse(message.data);
    const data = event.data || {};
    addEvent(event);
    if (typeof data.total_steps === "number") total = data.total_steps;
    if (event.type === "metrics" && typeof data.step === "number") {
      if ("train_loss" in data) step = data.step;
      if (status.textContent === "queued" || status.textContent === "validating_files") {
        status.textContent = "running";
        status.className = "status status-running";
      }
      curvesChanged();
    }
    showProgress();
  };
  stream.addEventListener("done", function () {
    stream.close();
    window.location.reload();
  });
  stream.onerror = function () {
    live.textContent = stream.readyState === EventSource.CLOSED ? "disconnected" : "reconnecting…";
  };
  stream.onopen = function () {
    live.textContent = "live";
  };
})();
