// Every page: the colour theme (auto, light or dark; remembered in this
// browser), the navigation menu on phones, groups opened or closed as each
// user last left them, and "/" to search. The page works without it.
(function () {
  "use strict";
  var root = document.documentElement;
  var store = {
    get: function (key) { try { return localStorage.getItem(key); } catch (e) { return null; } },
    set: function (key, value) { try { localStorage.setItem(key, value); } catch (e) { /* private mode */ } }
  };
  var THEMES = ["auto", "light", "dark"];
  function applyTheme(theme) {
    if (theme === "light" || theme === "dark") root.setAttribute("data-theme", theme);
    else root.removeAttribute("data-theme");
  }
  // Before the first paint: no flash of the other theme.
  applyTheme(store.get("portwatch.theme"));
  root.classList.add("js");

  document.addEventListener("DOMContentLoaded", function () {
    var toggle = document.getElementById("theme");
    if (toggle) {
      var show = function () {
        var theme = store.get("portwatch.theme") || "auto";
        toggle.textContent = "Theme: " + theme;
        toggle.setAttribute("aria-label", "Colour theme: " + theme + " (change)");
      };
      toggle.hidden = false;
      show();
      toggle.addEventListener("click", function () {
        var now = store.get("portwatch.theme") || "auto";
        var next = THEMES[(THEMES.indexOf(now) + 1) % THEMES.length];
        store.set("portwatch.theme", next);
        applyTheme(next);
        show();
      });
    }

    var menu = document.getElementById("menu");
    if (menu) {
      menu.addEventListener("click", function () {
        var open = document.body.classList.toggle("menu-open");
        menu.setAttribute("aria-expanded", open ? "true" : "false");
      });
    }

    // Groups: each user's last choice, open or closed, wins over the
    // page's default.
    var user = document.body.getAttribute("data-user");
    if (user) {
      var key = "portwatch.groups." + user;
      var saved = {};
      try { saved = JSON.parse(store.get(key) || "{}") || {}; } catch (e) { saved = {}; }
      document.querySelectorAll("details.group[data-group]").forEach(function (group) {
        var name = group.getAttribute("data-group");
        if (Object.prototype.hasOwnProperty.call(saved, name)) group.open = saved[name];
        group.addEventListener("toggle", function () {
          saved[name] = group.open;
          store.set(key, JSON.stringify(saved));
        });
      });
    }

    var search = document.querySelector("input[name=q]");
    document.addEventListener("keydown", function (event) {
      var typing = /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement.tagName);
      if (search && event.key === "/" && !typing && !event.ctrlKey && !event.metaKey) {
        event.preventDefault();
        search.focus();
      }
    });
  });
})();
