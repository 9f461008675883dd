// A form with data-confirm="question" asks before it is sent (e.g. cancelling a job). Delegated
// from the document, so it keeps working on parts that htmx swaps in (the live job status).
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.dataset && form.dataset.confirm;
    if (question && !window.confirm(question)) event.preventDefault();
  }, true);
})();
