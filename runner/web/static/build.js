// The build page, live: while the build runs, new log lines and state changes arrive as
// server-sent events (GET /builds/ID/events) and are added in place; no reload. The lines come
// rendered by the server from escaped text (runner/web/logview.py); everything else is set as
// text. Without JavaScript the page refreshes itself instead (<noscript> meta refresh).
(function () {
  "use strict";
  var root = document.getElementById("build");
  var log = document.getElementById("log");
  if (!root || !log || root.getAttribute("data-final") === "true" || !window.EventSource) return;

  var live = document.getElementById("live");
  var trimmed = document.getElementById("trimmed");
  // A build may print far more than a page can hold: keep the newest lines, like the page does
  // when it is loaded (the raw log has everything).
  var MAX_LINES = 30000;
  var follow = true;
  function nearBottom() {
    return window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 80;
  }
  window.addEventListener("scroll", function () { follow = nearBottom(); }, { passive: true });

  function say(text) { if (live) live.textContent = text; }
  function setText(id, text) {
    var element = document.getElementById(id);
    if (element) element.textContent = text || "";
  }
  function showState(data) {
    document.querySelectorAll("[data-build-state]").forEach(function (element) {
      element.textContent = data.state;
      element.className = "state " + data.state;
    });
    setText("description", data.description);
    setText("started", data.started_at || "not yet");
    setText("finished", data.finished_at || "not yet");
    setText("waited", data.waited ? "waited " + data.waited : "");
    setText("ran", data.ran ? "took " + data.ran + " from start to end, checkout included" : "");
    if (data.started_epoch) root.setAttribute("data-started", String(data.started_epoch));
    document.title = document.title.replace(/^#(\d+) \w+/, "#$1 " + data.state);
    root.setAttribute("data-state", data.state);
    if (data.is_final) {
      root.setAttribute("data-final", "true");
      document.querySelectorAll("[data-while=running]").forEach(function (e) { e.hidden = true; });
      document.querySelectorAll("[data-while=final]").forEach(function (e) { e.hidden = false; });
    }
  }

  // A running build's time counts up, once a second, until its final state arrives.
  function elapsed(seconds) {
    var whole = Math.max(0, Math.floor(seconds));
    return whole < 60 ? whole + " s" : Math.floor(whole / 60) + " min " + (whole % 60) + " s";
  }
  var ticking = window.setInterval(function () {
    if (root.getAttribute("data-final") === "true") { window.clearInterval(ticking); return; }
    var started = parseFloat(root.getAttribute("data-started"));
    if (started) setText("ran", "running for " + elapsed(Date.now() / 1000 - started));
  }, 1000);

  var source = new EventSource(root.getAttribute("data-events"));
  source.addEventListener("open", function () { say("Live: following the build."); });
  source.addEventListener("lines", function (event) {
    var data = JSON.parse(event.data);
    log.insertAdjacentHTML("beforeend", data.html);
    var excess = log.childElementCount - MAX_LINES;
    if (excess > 0) {
      for (var i = 0; i < excess; i++) log.removeChild(log.firstElementChild);
      if (trimmed) trimmed.hidden = false;
    }
    if (follow) window.scrollTo(0, document.documentElement.scrollHeight);
  });
  source.addEventListener("reset", function () {
    log.textContent = "";
    say("The build started over; its log restarts.");
  });
  source.addEventListener("capped", function () {
    say("Output is over builds.max_log_bytes: the rest is kept as a tail, shown when the build ends.");
  });
  source.addEventListener("state", function (event) { showState(JSON.parse(event.data)); });
  source.addEventListener("end", function (event) {
    showState(JSON.parse(event.data));
    source.close();
    say("The build has finished.");
  });
  source.addEventListener("error", function () {
    if (source.readyState === EventSource.CLOSED) say("Live updates stopped: reload the page.");
    else say("Reconnecting…");
  });
})();
