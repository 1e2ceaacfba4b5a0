// telem-server pages: the one script. It only polls for new records on the records page
// (element #new-records with data-poll) and shows a link to them; everything else works
// without it. It writes text only (textContent), never HTML.
"use strict";

(function () {
  var INTERVAL_MS = 15000;

  function startPolling(notice) {
    var url = notice.getAttribute("data-poll");
    var href = notice.getAttribute("data-href") || window.location.href;
    if (!url) {
      return;
    }
    function show(count) {
      notice.textContent = "";
      var a = document.createElement("a");
      a.href = href;
      a.id = "new-records-link";
      a.textContent = count + (count === 1 ? " new record, show" : " new records, show");
      notice.appendChild(a);
      notice.hidden = false;
    }
    function poll() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) {
          return r.ok ? r.json() : null;
        })
        .then(function (j) {
          if (j && typeof j.count === "number" && j.count > 0) {
            show(j.count);
          }
        })
        .catch(function () {
          // The server may be restarting: try again at the next tick.
        });
    }
    window.setInterval(poll, INTERVAL_MS);
    notice.addEventListener("telem-poll", poll);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var notice = document.getElementById("new-records");
    if (notice) {
      startPolling(notice);
    }
  });
})();
