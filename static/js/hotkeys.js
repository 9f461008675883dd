// Task page shortcuts shared by the demonstration and ranking forms: Ctrl+Enter (or Cmd+Enter)
// submits, S opens "Skip this task" at its reason, ? lists every key (the <dialog id="hotkeys">).
// Letter keys do nothing while the labeler types in a text field.
(function () {
  "use strict";
  var form = document.getElementById("task-form");
  var dialog = document.getElementById("hotkeys");
  if (!form) return;

  function typing(el) {
    return el.matches("textarea, select, input:not([type=radio]):not([type=checkbox])") ||
      el.isContentEditable;
  }

  function showKeys() {
    if (dialog && !dialog.open) dialog.showModal();
  }

  document.querySelectorAll("[data-hotkeys-open]").forEach(function (button) {
    button.addEventListener("click", showKeys);
  });

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented) return;
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      form.requestSubmit(document.getElementById("submit-task"));
      return;
    }
    if (event.altKey || event.ctrlKey || event.metaKey || typing(event.target)) return;
    if (dialog && dialog.open) return;
    if (event.key === "?") {
      event.preventDefault();
      showKeys();
    } else if (event.key === "s" || event.key === "S") {
      var skip = form.querySelector("details.skip");
      if (!skip) return;
      event.preventDefault();
      skip.open = true;
      var reason = document.getElementById("skip-reason");
      reason.focus();
      reason.scrollIntoView({ block: "center" });
    }
  });
})();
