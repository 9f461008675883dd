// Ranking: order the output cards best to worst, with ties, by mouse (drag the header) or by
// keyboard alone (focus a card: ArrowUp/ArrowDown move it, Home/End to top/bottom, T ties it
// with the card above or splits the tie; J/K or ArrowRight/ArrowLeft go to the next/previous
// card, 1-7 score it, F opens its flags). The order is kept as tie groups and written into the
// hidden rank_<id> fields (equal numbers = a tie), which the server turns into the ranking.
// Long outputs are collapsed with a "Show all" button; a ranking left in the order shown with
// no score or flag is stopped before it is sent (the server refuses it too) until the labeler
// ticks "The order shown is my ranking".
(function () {
  "use strict";
  var list = document.getElementById("rank-list");
  if (!list) return;
  var announcer = document.getElementById("rank-status");

  function cards() {
    return Array.prototype.slice.call(list.querySelectorAll(".rank-card"));
  }
  function cardOf(cid) {
    return list.querySelector('.rank-card[data-cid="' + cid + '"]');
  }
  function rankInput(card) {
    return card.querySelector('input[name="rank_' + card.dataset.cid + '"]');
  }

  // groups: [[cid, ...], ...], best first; start from the rank fields when they are all set
  // (a restored draft or the form shown again after an error), else the order shown
  var groups = (function () {
    var byRank = {};
    var complete = cards().every(function (card) {
      var rank = parseInt(rankInput(card).value, 10);
      if (!(rank >= 1)) return false;
      (byRank[rank] = byRank[rank] || []).push(card.dataset.cid);
      return true;
    });
    if (!complete) return cards().map(function (card) { return [card.dataset.cid]; });
    return Object.keys(byRank)
      .map(Number)
      .sort(function (a, b) { return a - b; })
      .map(function (rank) { return byRank[rank]; });
  })();

  function locate(cid) {
    for (var g = 0; g < groups.length; g++) {
      var i = groups[g].indexOf(cid);
      if (i !== -1) return { g: g, i: i };
    }
    return null;
  }

  function removeFromGroups(cid) {
    var at = locate(cid);
    groups[at.g].splice(at.i, 1);
    if (!groups[at.g].length) {
      groups.splice(at.g, 1);
      return at.g;
    }
    return at.g + 1;  // the index just below the group it left
  }

  var shownOrder = cards().map(function (card) { return card.dataset.cid; });

  function changed() {
    if (window.prefloopDraft) window.prefloopDraft.changed();
  }

  function render(focusCid) {
    groups.forEach(function (group, g) {
      group.forEach(function (cid, i) {
        var card = cardOf(cid);
        list.appendChild(card);
        var tied = i > 0;
        card.classList.toggle("tied", tied);
        card.querySelector("[data-tie-note]").hidden = !tied;
        card.querySelector("[data-rank-label]").textContent = String(g + 1);
        rankInput(card).value = String(g + 1);
        var tieButton = card.querySelector("[data-tie]");
        tieButton.setAttribute("aria-pressed", tied ? "true" : "false");
        tieButton.textContent = tied ? "Split tie" : "Tie";
        tieButton.disabled = g === 0 && i === 0 && group.length === 1;
      });
    });
    if (focusCid) cardOf(focusCid).focus();
  }

  function announce(cid) {
    var at = locate(cid);
    var letter = cardOf(cid).dataset.letter;
    var message = "Output " + letter + " is now rank " + (at.g + 1) + " of " + groups.length;
    if (groups[at.g].length > 1) message += ", tied with " + (groups[at.g].length - 1) + " other";
    announcer.textContent = message + ".";
  }

  // moving a card never splits other cards' ties: it steps over whole groups, and a card that
  // is part of a tie first leaves its group (to just above or just below it)
  function moveUp(cid) {
    var at = locate(cid);
    if (groups[at.g].length > 1) {
      groups[at.g].splice(at.i, 1);
      groups.splice(at.g, 0, [cid]);
    } else if (at.g > 0) {
      var above = groups[at.g - 1];
      groups[at.g - 1] = groups[at.g];
      groups[at.g] = above;
    }
  }

  function moveDown(cid) {
    var at = locate(cid);
    if (groups[at.g].length > 1) {
      groups[at.g].splice(at.i, 1);
      groups.splice(at.g + 1, 0, [cid]);
    } else if (at.g < groups.length - 1) {
      var below = groups[at.g + 1];
      groups[at.g + 1] = groups[at.g];
      groups[at.g] = below;
    }
  }

  function moveTo(cid, index) {
    removeFromGroups(cid);
    groups.splice(Math.max(0, Math.min(index, groups.length)), 0, [cid]);
  }

  function toggleTie(cid) {
    var at = locate(cid);
    if (at.i > 0 || groups[at.g].length > 1) {
      // split: the card becomes its own place just below the group
      groups[at.g].splice(at.i, 1);
      groups.splice(at.g + 1, 0, [cid]);
    } else if (at.g > 0) {
      groups.splice(at.g, 1);
      groups[at.g - 1].push(cid);
    }
  }

  function act(cid, action) {
    action(cid);
    render(cid);
    announce(cid);
    changed();
  }

  // --- keyboard -----------------------------------------------------------------------------
  function focusCard(offset, from) {
    var all = cards();
    var index = from ? all.indexOf(from) + offset : offset > 0 ? 0 : all.length - 1;
    var card = all[Math.max(0, Math.min(index, all.length - 1))];
    card.focus();
    card.scrollIntoView({ block: "nearest" });
  }

  function setLikert(card, value) {
    var radio = card.querySelector('input[type="radio"][value="' + value + '"]');
    if (!radio) return;
    radio.checked = true;
    radio.dispatchEvent(new Event("change", { bubbles: true }));
    announcer.textContent = "Output " + card.dataset.letter + " scored " + value + " of 7.";
  }

  function toggleFlags(card) {
    var details = card.querySelector("[data-flags]");
    details.open = !details.open;
    if (details.open) details.querySelector("input").focus();
    else card.focus();
  }

  function typing(el) {
    return el.matches("textarea, select, input:not([type=radio]):not([type=checkbox])") ||
      el.isContentEditable;
  }

  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey || event.defaultPrevented) return;
    var target = event.target;
    if (typing(target) || document.querySelector("dialog[open]")) return;
    var card = target.closest ? target.closest(".rank-card") : null;
    var onCard = card && target === card;
    var key = event.key;
    var handled = true;
    if (key === "j" || key === "J" || (onCard && key === "ArrowRight")) focusCard(1, card);
    else if (key === "k" || key === "K" || (onCard && key === "ArrowLeft")) focusCard(-1, card);
    else if (card && /^[1-7]$/.test(key)) setLikert(card, key);
    else if (card && (key === "f" || key === "F")) toggleFlags(card);
    else if (card && key === "Escape" && !onCard) {
      card.querySelector("[data-flags]").open = false;
      card.focus();
    } else if (onCard && key === "Enter") {
      var more = card.querySelector("[data-show-all]");
      if (more && !more.hidden) more.click();
    } else if (onCard) {
      // reordering keys act only on the card itself: inside the radios arrows keep their meaning
      var actions = {
        ArrowUp: moveUp,
        ArrowDown: moveDown,
        Home: function (c) { moveTo(c, 0); },
        End: function (c) { moveTo(c, groups.length); },
        t: toggleTie,
        T: toggleTie,
      };
      if (actions[key]) act(card.dataset.cid, actions[key]);
      else handled = false;
    } else handled = false;
    if (handled) event.preventDefault();
  });

  // --- buttons, flags, long outputs ---------------------------------------------------------
  list.addEventListener("click", function (event) {
    var button = event.target.closest("button");
    if (!button || !list.contains(button)) return;
    var card = button.closest(".rank-card");
    var cid = card.dataset.cid;
    if ("showAll" in button.dataset) {
      var text = card.querySelector(".completion-text");
      var expanded = text.classList.toggle("collapsed") === false;
      button.setAttribute("aria-expanded", expanded ? "true" : "false");
      button.textContent = expanded ? "Show less" : "Show all";
      return;
    }
    if (button.dataset.move === "up") act(cid, moveUp);
    else if (button.dataset.move === "down") act(cid, moveDown);
    else if ("tie" in button.dataset) act(cid, toggleTie);
    // keep the button under the pointer: repeated clicks keep working
    button.focus();
  });

  list.addEventListener("change", function (event) {
    if (event.target.type !== "checkbox") return;
    var card = event.target.closest(".rank-card");
    var n = card.querySelectorAll('[data-flags] input:checked').length;
    card.querySelector("[data-flag-count]").textContent = n ? "(" + n + ")" : "";
  });

  cards().forEach(function (card) {
    var text = card.querySelector(".completion-text");
    text.classList.add("collapsed");
    if (text.scrollHeight > text.clientHeight + 2) {
      card.querySelector("[data-show-all]").hidden = false;
    } else {
      text.classList.remove("collapsed");
    }
  });

  // --- nothing submitted untouched ----------------------------------------------------------
  var form = document.getElementById("task-form");
  var untouched = document.getElementById("untouched");
  var confirmBox = document.getElementById("confirmed-order");
  form.addEventListener("submit", function (event) {
    var submitter = event.submitter;
    if (submitter && submitter.getAttribute("formaction")) return;  // skipping
    if (form.dataset.editing) return;  // an edit starts from the labeler's own answer
    var inOrder = groups.length === shownOrder.length && groups.every(function (group, g) {
      return group.length === 1 && group[0] === shownOrder[g];
    });
    var rated = form.querySelector('.rank-card input[type="radio"]:checked, .rank-card input[type="checkbox"]:checked');
    if (inOrder && !rated && !confirmBox.checked) {
      event.preventDefault();
      event.stopImmediatePropagation();  // draft.js must not mark the form as being sent
      untouched.hidden = false;
      confirmBox.focus();
    }
  }, true);

  // --- drag and drop ------------------------------------------------------------------------
  // pointer events (mouse, pen and touch alike): the card follows the pointer through the list,
  // and on release it takes its own place before the group it landed above. Near the window's
  // top or bottom edge the page scrolls, once the pointer has moved: a card pressed near the
  // edge and not moved leaves the page where it is. Side by side (K <= 3 on a wide screen) the
  // axis is x.
  var dragging = null;
  var startedBefore = null;  // the card's next sibling when the drag began
  var pointerX = 0;
  var pointerY = 0;
  var scrolling = null;
  var EDGE = 60;

  function horizontal() {
    return getComputedStyle(list).display === "grid" &&
      getComputedStyle(list).gridTemplateColumns.split(" ").length > 1;
  }

  function autoscroll() {
    if (!dragging) { scrolling = null; return; }
    var step = 0;
    if (pointerY < EDGE) step = -Math.ceil((EDGE - pointerY) / 4);
    else if (pointerY > window.innerHeight - EDGE) step = Math.ceil((pointerY - window.innerHeight + EDGE) / 4);
    if (step) {
      window.scrollBy(0, step);
      place();  // the pointer stays still while the page moves under it: the card follows
    }
    scrolling = window.requestAnimationFrame(autoscroll);
  }

  list.addEventListener("pointerdown", function (event) {
    var handle = event.target.closest(".drag-handle, .rank-head");
    if (!handle || event.button !== 0 || event.target.closest("button, input")) return;
    dragging = handle.closest(".rank-card");
    startedBefore = dragging.nextElementSibling;
    dragging.classList.add("dragging");
    list.setPointerCapture(event.pointerId);
    pointerX = event.clientX;
    pointerY = event.clientY;
    event.preventDefault();
  });

  // the dragged card goes before the first card whose middle is past the pointer
  function place() {
    var across = horizontal();
    var before = null;
    cards().some(function (card) {
      if (card === dragging) return false;
      var box = card.getBoundingClientRect();
      var isBefore = across ? pointerX < box.left + box.width / 2
        : pointerY < box.top + box.height / 2;
      if (isBefore) before = card;
      return isBefore;
    });
    if (before) list.insertBefore(dragging, before);
    else list.appendChild(dragging);
  }

  list.addEventListener("pointermove", function (event) {
    if (!dragging || (event.clientX === pointerX && event.clientY === pointerY)) return;
    pointerX = event.clientX;
    pointerY = event.clientY;
    place();
    if (!scrolling) scrolling = window.requestAnimationFrame(autoscroll);
  });

  function drop() {
    if (!dragging) return;
    var card = dragging;
    dragging = null;
    card.classList.remove("dragging");
    var cid = card.dataset.cid;
    var next = card.nextElementSibling;
    if (next === startedBefore) {
      render(null);  // a click, or dropped where it was: keep its ties
      return;
    }
    removeFromGroups(cid);
    var index = groups.length;
    if (next) index = locate(next.dataset.cid).g;
    groups.splice(index, 0, [cid]);
    render(cid);
    announce(cid);
    changed();
  }
  list.addEventListener("pointerup", drop);
  list.addEventListener("pointercancel", drop);

  render(null);
})();
