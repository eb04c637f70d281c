// warroom board: live updates for server-rendered pages. Plain JavaScript, no build step.
// Served as a file so that the Content-Security-Policy allows no inline script.
// - Listens to the page's Server-Sent Events (body[data-events]); on "change" re-reads the
//   page and swaps its <main>, so nothing reloads and the scroll position stays.
// - Counts down every <time data-due> once a second, on the server's clock (main[data-now]).
// - When the stream drops, says so and how old the page is; EventSource reconnects by itself,
//   and the page is re-read on reconnect so nothing missed stays missing.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var url = document.body.getAttribute("data-events");
  var offset = 0; // server time minus browser time, in ms
  var freshAt = Date.now(); // when the page's data was last known current (browser time)
  var connected = false;
  var lostAt = null;
  var fetching = false;
  var again = false;

  function readOffset() {
    var main = document.querySelector("main[data-now]");
    if (main) {
      var now = parseInt(main.getAttribute("data-now"), 10);
      if (!isNaN(now)) offset = now * 1000 - Date.now();
    }
  }

  function human(s) {
    s = Math.max(0, Math.floor(s));
    var d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
    var m = Math.floor((s % 3600) / 60), sec = s % 60;
    var out = "";
    if (d) out += d + "d";
    if (h) out += h + "h";
    if (m) out += m + "m";
    if (sec || !out) out += sec + "s";
    return out;
  }

  function say(text) {
    if (live && live.textContent !== text) live.textContent = text;
  }

  function tick() {
    var now = Date.now() + offset;
    var times = document.querySelectorAll("time[data-due]");
    for (var i = 0; i < times.length; i++) {
      var due = parseInt(times[i].getAttribute("data-due"), 10) * 1000;
      if (isNaN(due)) continue;
      var left = (due - now) / 1000;
      var text = left >= 1 ? "in " + human(left) : left > -1 ? "due now" : "due " + human(-left) + " ago";
      if (times[i].textContent !== text) times[i].textContent = text;
    }
    if (!url) return;
    if (connected) {
      say("Live: updates as they happen.");
    } else if (lostAt !== null) {
      say("Connection lost " + human((Date.now() - lostAt) / 1000) + " ago; this page is " +
          human((Date.now() - freshAt) / 1000) + " old. Reconnecting…");
      document.body.classList.add("stale");
    } else {
      say("Connecting for live updates…");
    }
  }

  function refresh() {
    if (fetching) { again = true; return; }
    fetching = true;
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (!r.ok) throw new Error("status " + r.status);
        return r.text();
      })
      .then(function (text) {
        var doc = new DOMParser().parseFromString(text, "text/html");
        var fresh = doc.querySelector("main");
        var old = document.querySelector("main");
        if (fresh && old) {
          var focused = document.activeElement && document.activeElement.id;
          old.replaceWith(document.importNode(fresh, true));
          if (focused) {
            var again_ = document.getElementById(focused);
            if (again_) again_.focus();
          }
          document.title = doc.title;
          readOffset();
          freshAt = Date.now();
          document.body.setAttribute("data-refreshed", String(freshAt));
          tick();
        }
      })
      .catch(function () { /* the next change or reconnect tries again */ })
      .then(function () {
        fetching = false;
        if (again) { again = false; refresh(); }
      });
  }

  readOffset();
  tick();
  window.setInterval(tick, 1000);
  if (!url || !window.EventSource) return;
  var source = new EventSource(url);
  source.addEventListener("hello", function () {
    var wasLost = lostAt !== null;
    connected = true;
    lostAt = null;
    document.body.classList.remove("stale");
    document.body.setAttribute("data-live", "connected");
    if (wasLost) refresh(); else freshAt = Date.now();
    tick();
  });
  source.addEventListener("change", function () { refresh(); });
  source.addEventListener("error", function () {
    if (connected || lostAt === null) lostAt = Date.now();
    connected = false;
    document.body.setAttribute("data-live", "lost");
    tick();
  });
})();
