// Ranking: order the output cards best to worst, with ties, by mouse (drag the handle) or by
// keyboard alone (focus a card: ArrowUp/ArrowDown move it, Home/End to top/bottom, T ties it
// with the card above or splits the tie). The order is kept as tie groups and written into the
// hidden rank_<id> fields (equal numbers = a tie), which the server turns into the ranking.
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
        tieButton.textContent = tied ? "Split tie" : "Tie with above";
        tieButton.disabled = g === 0 && i === 0 && group.length === 1;
      });
    });
    if (focusCid) cardOf(focusCid).focus();
    if (window.prefloopDraft) window.prefloopDraft.save();
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
  }

  list.addEventListener("keydown", function (event) {
    var card = event.target;
    // only when the card itself has focus: arrows inside the Likert radios keep their meaning
    if (!card.classList || !card.classList.contains("rank-card")) return;
    var cid = card.dataset.cid;
    var actions = {
      ArrowUp: moveUp,
      ArrowDown: moveDown,
      Home: function (c) { moveTo(c, 0); },
      End: function (c) { moveTo(c, groups.length); },
      t: toggleTie,
      T: toggleTie,
    };
    var action = actions[event.key];
    if (!action || event.altKey || event.ctrlKey || event.metaKey) return;
    event.preventDefault();
    act(cid, action);
  });

  list.addEventListener("click", function (event) {
    var button = event.target.closest("button");
    if (!button || !list.contains(button)) return;
    var cid = button.closest(".rank-card").dataset.cid;
    if (button.dataset.move === "up") act(cid, moveUp);
    else if (button.dataset.move === "down") act(cid, moveDown);
    else if ("tie" in button.dataset) act(cid, toggleTie);
    // keep the button focused so repeated clicks/Enter keep working
    button.focus();
  });

  // drag and drop with pointer events (mouse, pen and touch alike): the card follows the
  // pointer through the list, and on release it takes its own place before the group it
  // landed above
  var dragging = null;
  var startedBefore = null;  // the card's next sibling when the drag began

  list.addEventListener("pointerdown", function (event) {
    var handle = event.target.closest(".drag-handle, .rank-head");
    if (!handle || event.button !== 0 || event.target.closest("button, input")) return;
    dragging = handle.closest(".rank-card");
    startedBefore = dragging.nextElementSibling;
    dragging.classList.add("dragging");
    list.setPointerCapture(event.pointerId);
    event.preventDefault();
  });

  list.addEventListener("pointermove", function (event) {
    if (!dragging) return;
    var before = null;
    cards().some(function (card) {
      if (card === dragging) return false;
      var box = card.getBoundingClientRect();
      if (event.clientY < box.top + box.height / 2) {
        before = card;
        return true;
      }
      return false;
    });
    if (before) list.insertBefore(dragging, before);
    else list.appendChild(dragging);
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
    if (next) {
      var at = locate(next.dataset.cid);
      index = at.g;
    }
    groups.splice(index, 0, [cid]);
    render(cid);
    announce(cid);
  }
  list.addEventListener("pointerup", drop);
  list.addEventListener("pointercancel", drop);

  render(null);
})();
