// Live progress of a training run: reload the page when the run's status or log changes.
(function () {
  "use strict";
  var panel = document.getElementById("run");
  var seen = null;
  setInterval(function () {
    fetch(panel.dataset.statusUrl, {credentials: "same-origin"})
      .then(function (answer) { return answer.json(); })
      .then(function (run) {
        var key = run.status + ":" + run.log_lines;
        if (seen !== null && key !== seen) { window.location.reload(); }
        seen = key;
      });
  }, 3000);
})();
