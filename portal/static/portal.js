// The portal's only script (vendored, no dependencies): the live alert queue (server-sent
// events), the dashboard's refresh, and one submission per review form.
"use strict";
(function () {
  function liveQueue() {
    var table = document.getElementById("queue");
    if (!table || !table.dataset.stream || !window.EventSource) return;
    var body = document.getElementById("queue-body");
    var state = document.getElementById("live-state");
    var counter = document.getElementById("live-count");
    var added = 0;
    var source = new EventSource(table.dataset.stream);
    source.addEventListener("open", function () { state.textContent = "live"; });
    source.addEventListener("error", function () { state.textContent = "live: reconnecting…"; });
    source.addEventListener("alert", function (event) {
      var alert = JSON.parse(event.data);
      if (body.querySelector('tr[data-alert-id="' + alert.alert_id + '"]')) return;
      var holder = document.createElement("tbody");
      holder.innerHTML = alert.html;
      var row = holder.firstElementChild;
      if (!row) return;
      body.insertBefore(row, body.firstChild);
      var empty = document.getElementById("queue-empty");
      if (empty) empty.remove();
      added += 1;
      counter.textContent = added + " new since this page opened";
    });
  }
  function dashboardRefresh() {
    var panel = document.getElementById("dashboard-panel");
    if (!panel || !panel.dataset.refresh) return;
    var stamp = document.getElementById("refreshed");
    setInterval(function () {
      fetch(panel.dataset.refresh, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) { if (r.ok) return r.text(); throw new Error(r.status); })
        .then(function (html) { panel.innerHTML = html; stamp.textContent = "updated " + new Date().toLocaleTimeString(); })
        .catch(function (e) { stamp.textContent = "refresh failed (" + e.message + ")"; });
    }, 5000);
  }
  function oneSubmission() {
    document.querySelectorAll("form[data-once]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (form.dataset.sent) { event.preventDefault(); return; }
        form.dataset.sent = "1";
        var chosen = event.submitter;
        if (chosen && chosen.name) {  // keep the clicked button's value once the buttons are disabled
          var hidden = document.createElement("input");
          hidden.type = "hidden"; hidden.name = chosen.name; hidden.value = chosen.value;
          form.appendChild(hidden);
        }
        setTimeout(function () { form.querySelectorAll("button").forEach(function (b) { b.disabled = true; }); }, 0);
      });
    });
  }
  document.addEventListener("DOMContentLoaded", function () { liveQueue(); dashboardRefresh(); oneSubmission(); });
})();
