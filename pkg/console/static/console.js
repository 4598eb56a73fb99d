// Live parts of the console: an element with data-refresh="URL" is
// replaced, every data-every seconds (5 by default), by the element of the
// same id in the page at URL. Pages work without it; it only saves a reload.
(function () {
  "use strict";
  function refresh(el) {
    var every = (parseInt(el.getAttribute("data-every"), 10) || 5) * 1000;
    setTimeout(function tick() {
      fetch(el.getAttribute("data-refresh"), { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (html) {
          var doc = new DOMParser().parseFromString(html, "text/html");
          var fresh = doc.getElementById(el.id);
          if (fresh) { el.replaceWith(fresh); el = fresh; }
        })
        .catch(function () { /* keep what is shown; try again */ })
        .then(function () { setTimeout(tick, every); });
    }, every);
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-refresh][id]").forEach(refresh);
  });
})();
