// The dashboard follows state changes without a reload: /live sends each
// change (Server-Sent Events), applied here to the sensor's rows, the
// counts and the title; scroll position and open groups stay as they are.
// Without JavaScript the page refreshes itself instead (<noscript>).
(function () {
  "use strict";
  var main = document.querySelector("[data-live]");
  if (!main || !window.EventSource) return;
  var lost = document.getElementById("live-lost");
  var changes = document.getElementById("live-changes");
  // A sensor's page follows that sensor: it reloads when its state is no
  // longer the one shown.
  var follow = main.getAttribute("data-follow");
  var source = new EventSource(main.getAttribute("data-live"));
  source.addEventListener("state", function (message) {
    var change = JSON.parse(message.data);
    if (follow !== null) {
      if (String(change.id) === follow && change.state !== main.getAttribute("data-state")) {
        location.reload();
      }
      return;
    }
    document.querySelectorAll('tr.sensor[data-id="' + change.id + '"]').forEach(function (row) {
      row.setAttribute("data-state", change.class);
      row.querySelector(".state-cell .dot").className = "dot state-" + change.class;
      var state = row.querySelector(".state-cell .state");
      state.className = "state state-" + change.class;
      state.textContent = change.state;
      var reason = row.querySelector(".reason");
      reason.textContent = change.reason;
      reason.title = change.message;
      var since = row.querySelector(".since time");
      since.textContent = "just now";
      since.title = change.at;
    });
    var item = document.createElement("li");
    item.className = "state-" + change.class;
    item.textContent = change.at.slice(11, 19) + " " + change.path + " " + change.state +
      (change.reason ? " (" + change.reason + ")" : "");
    changes.insertBefore(item, changes.firstChild);
    while (changes.children.length > 5) changes.removeChild(changes.lastChild);
    changes.hidden = false;
  });
  source.addEventListener("counts", function (message) {
    if (follow !== null) return;
    var counts = JSON.parse(message.data);
    document.title = counts.title;
    document.querySelectorAll(".counts [data-count]").forEach(function (badge) {
      var state = badge.getAttribute("data-count");
      var n = counts.counts[state] || 0;
      badge.textContent = state + " " + n;
      badge.classList.toggle("zero", n === 0);
    });
  });
  source.addEventListener("reload", function () { location.reload(); });
  source.addEventListener("signedout", function () { source.close(); location.reload(); });
  source.addEventListener("open", function () { if (lost) lost.hidden = true; });
  source.addEventListener("error", function () { if (lost) lost.hidden = false; });
})();
