// A public status page keeps itself current: every 30 s it reads its own
// JSON and updates the banner and each service's state in place (no
// reload, so nothing moves under the reader). Without JavaScript the page
// refreshes itself instead (<noscript>).
(function () {
  "use strict";
  var banner = document.getElementById("overall");
  if (!banner || !window.fetch) return;
  var CLASSES = { up: "up", warning: "warning", down: "down", unknown: "unknown" };
  var BANNERS = {
    "All systems operational": "up", "Degraded performance": "warning",
    "Partial outage": "down", "Major outage": "down"
  };
  function update() {
    var url = new URL(location.href);
    url.searchParams.set("format", "json");
    fetch(url.toString(), { headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (page) {
        if (!page) return;
        banner.textContent = page.overall;
        banner.className = "banner banner-" + (BANNERS[page.overall] || "warning");
        page.sections.forEach(function (section) {
          section.sensors.forEach(function (sensor) {
            document.querySelectorAll("tr[data-name]").forEach(function (row) {
              if (row.getAttribute("data-name") !== sensor.name) return;
              var cls = CLASSES[sensor.state] || "paused";
              row.querySelector(".dot").className = "dot state-" + cls;
              var cell = row.querySelector("td.state");
              cell.className = "state state-" + cls;
              cell.textContent = sensor.state;
            });
          });
        });
      })
      .catch(function () { /* try again next time */ });
  }
  setInterval(update, 30000);
})();
