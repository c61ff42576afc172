// The question page: grade one free-text question for all teams by keyboard.
//
// Every key acts at once on the answer the TA sees selected: Enter queues the
// save and moves on, and the saves go to the server one after another in the
// background, so keys typed while a save is on its way land on the answer now
// in view, in the order typed. "saved" is shown only once the server answers
// that the gradebook holds the value; a save that fails says so in place and
// puts the value back in its field. Each change carries the version of the
// field the TA saw; a field another TA changed since is refused by the server
// and shown here with both values (m keeps mine, t keeps theirs). Other TAs'
// saves reach the page by polling.
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("config").textContent);
  const truth = config.teams;     // team id -> the server's last word on its grade
  const progress = document.getElementById("progress");
  const savesNote = document.getElementById("saves");
  const targets = Array.from(document.querySelectorAll(".target")).map(function (element, index) {
    return {element: element, index: index, kind: element.dataset.kind, teams: JSON.parse(element.dataset.teams),
            score: element.querySelector("input.score"), comment: element.querySelector("textarea.comment"),
            state: element.querySelector(".state"), conflictBox: element.querySelector(".conflict"),
            edit: {}, group: null, members: []};
  });
  targets.forEach(function (target) {
    if (target.kind === "team") {
      const group = targets.find(function (other) {
        return other.kind === "group" && other.element.closest("article") === target.element.closest("article");
      });
      target.group = group;
      group.members.push(target);
    }
  });

  const queue = [];               // saves not yet answered, oldest first; the first one may be on its way
  let sending = false;
  let nextJob = 1;
  let answeredSaves = 0;          // how many saves were answered: a poll started before one is stale
  const conflicts = [];           // saves the server refused in part, until the TA keeps mine or theirs
  let current = -1;
  let leaving = false;

  // ---- what the page shows: the server's word, then the saves still on their way ----

  function view(team) {
    const seen = Object.assign({}, truth[team]);
    queue.forEach(function (job) {
      job.changes.forEach(function (change) {
        if (change.team !== team) return;
        if (change.score !== undefined) { seen.manual = change.score; seen.score = change.score; seen.graded = true; }
        if (change.comment !== undefined) seen.comment = change.comment;
        seen.follows = job.asGroup;
      });
    });
    return seen;
  }

  function followers(target) {
    if (target.teams.length === 1) return target.teams.slice();
    return target.teams.filter(function (team) { return view(team).follows; });
  }

  function same(values) { return values.length > 0 && values.every(function (value) { return value === values[0]; }); }
  function formatPoints(value) { return value === null || value === undefined ? "" : String(Math.round(value * 100) / 100); }

  // The group's grade: what the teams following it hold.
  function shownScore(target) {
    if (target.kind === "team") return formatPoints(view(target.teams[0]).score);
    const scores = followers(target).map(view).filter(function (state) { return state.graded; })
      .map(function (state) { return state.score; });
    return same(scores) ? formatPoints(scores[0]) : "";
  }

  function shownComment(target) {
    if (target.kind === "team") return view(target.teams[0]).comment;
    const comments = followers(target).map(function (team) { return view(team).comment; })
      .filter(function (comment) { return comment !== ""; });
    return same(comments) ? comments[0] : "";
  }

  function isGraded(target) {
    const teams = target.kind === "group" ? followers(target) : target.teams;
    return teams.every(function (team) { return view(team).graded; });
  }

  function render(target) {
    const focused = document.activeElement;
    const score = target.edit.score !== undefined ? target.edit.score : shownScore(target);
    if (target.score.value !== score && !(focused === target.score && target.edit.score !== undefined)) target.score.value = score;
    const comment = target.edit.comment !== undefined ? target.edit.comment : shownComment(target);
    if (target.comment.value !== comment && !(focused === target.comment && target.edit.comment !== undefined)) {
      target.comment.value = comment;
    }
    target.element.dataset.graded = isGraded(target) ? "true" : "false";
    if (target.kind === "team") {
      const alone = !view(target.teams[0]).follows;
      target.element.classList.toggle("graded-alone", alone);
    } else if (target.members.length) {
      const following = followers(target).length;
      const alone = target.teams.length - following;
      target.element.querySelector(".applies").textContent = alone === 0
        ? "Points and comment here are for all " + target.teams.length + " teams."
        : "Points and comment here are for " + following + " of " + target.teams.length + " teams; " + alone +
          (alone === 1 ? " team was" : " teams were") + " graded alone and keep" + (alone === 1 ? "s its" : " their") +
          " own grade (marked below).";
      target.element.closest("article").classList.toggle("graded", target.members.concat([target]).every(isGraded));
    } else {
      target.element.closest("article").classList.toggle("graded", isGraded(target));
    }
  }

  function renderAll() {
    targets.forEach(render);
    const failed = targets.filter(function (target) { return target.failed; }).length;
    document.body.dataset.savesPending = String(queue.length);
    document.body.dataset.conflicts = String(conflicts.length);
    document.body.dataset.failed = String(failed);
    const parts = [];
    if (queue.length) parts.push("saving " + queue.length + "…");
    if (conflicts.length) parts.push(conflicts.length + " conflict" + (conflicts.length > 1 ? "s" : "") + ": m keeps mine, t keeps theirs");
    if (failed) parts.push(failed + " not saved");
    savesNote.textContent = parts.length ? parts.join(" · ") : "all saved";
    savesNote.className = "saves" + (conflicts.length || failed ? " error" : queue.length ? "" : " saved");
  }

  function say(target, text, kind) {
    target.state.textContent = text;
    target.state.className = "state " + (kind || "");
  }

  function setProgress(graded, total) {
    progress.textContent = graded + " / " + total + " graded";
    progress.classList.toggle("done", total > 0 && graded === total);
  }

  // ---- moving around ----

  function select(index) {
    if (index < 0 || index >= targets.length) return;
    if (current >= 0) targets[current].element.classList.remove("current");
    current = index;
    targets[current].element.classList.add("current");
    targets[current].element.scrollIntoView({block: "center"});
  }

  function nextUngraded(from) {
    for (let step = 1; step <= targets.length; step++) {
      const index = (from + step) % targets.length;
      if (!isGraded(targets[index])) return index;
    }
    return -1;
  }

  // ---- saving ----

  function readScore(target) {
    const raw = target.score.value.trim().replace(",", ".");
    if (raw === "") return {score: null};
    const score = Number(raw);
    if (!(score >= 0 && score <= config.max)) return {error: "points are 0 to " + formatPoints(config.max)};
    return {score: score};
  }

  // Only what the TA set: a score typed (never an empty one), a comment edited; for a group, only its
  // followers. An unedited group comment fills in only teams that have none.
  function changesFor(target, score, comment) {
    const teams = target.kind === "group" ? followers(target) : target.teams;
    const groupComment = target.kind === "group" && comment === undefined ? shownComment(target) : "";
    const changes = [];
    teams.forEach(function (team) {
      const state = view(team);
      const change = {team: team};
      if (score !== null && (!state.graded || state.score !== score)) change.score = score;
      if (comment !== undefined && state.comment !== comment) change.comment = comment;
      else if (comment === undefined && score !== null && groupComment && !state.comment) change.comment = groupComment;
      if (change.score !== undefined || change.comment !== undefined) changes.push(change);
    });
    return changes;
  }

  function saveAndAdvance() {
    const target = targets[current];
    const read = readScore(target);
    if (read.error) { say(target, read.error, "error"); return; }
    const comment = target.edit.comment;
    const changes = changesFor(target, read.score, comment);
    if (!changes.length) {
      if (target.kind === "group" && followers(target).length === 0 && read.score !== null) {
        say(target, "every team here was graded alone: grade them below, or g gives one this grade", "error");
        return;
      }
      target.edit = {};
      target.failed = false;
      say(target, read.score === null && comment === undefined ? "no points typed: nothing saved" : "unchanged");
    } else {
      // A group of one team is that team: graded alone before or not, the TA is grading it here.
      enqueue(target, target.kind === "group", changes, {score: target.score.value, comment: comment},
              target.kind === "group" && target.teams.length === 1);
      target.edit = {};
      target.failed = false;
      say(target, "saving…");
    }
    renderAll();
    const next = nextUngraded(current);
    if (next >= 0) select(next);
  }

  // Each field names the version the TA saw: the server's, or what an earlier save of this page will write.
  function enqueue(target, asGroup, changes, typed, explicit) {
    const job = {id: nextJob++, target: target, asGroup: asGroup, explicit: Boolean(explicit), typed: typed,
                 produced: {}, changes: []};
    changes.forEach(function (change) {
      const entry = Object.assign({}, change);
      ["score", "comment"].forEach(function (field) {
        if (change[field] === undefined) return;
        if (change.seenVersion) { entry[field + "Seen"] = {version: change.seenVersion}; return; }
        const earlier = queue.slice().reverse().find(function (other) {
          return other.changes.some(function (item) { return item.team === change.team && item[field] !== undefined; });
        });
        entry[field + "Seen"] = earlier ? {after: earlier, field: field} : {version: truth[change.team][field + "Version"]};
      });
      delete entry.seenVersion;
      job.changes.push(entry);
    });
    queue.push(job);
    pump();
    return job;
  }

  function queued(target) { return queue.some(function (job) { return job.target === target; }); }

  function seenVersion(job, team, field) {
    const change = job.changes.find(function (item) { return item.team === team && item[field] !== undefined; });
    const seen = change[field + "Seen"];
    if (seen.version !== undefined) return seen.version;
    const produced = seen.after.produced[team + "\u0000" + field];
    return produced !== undefined ? produced : seenVersion(seen.after, team, field);
  }

  async function pump() {
    if (sending || !queue.length) return;
    sending = true;
    const job = queue[0];
    const body = {assignment: config.assignment, notebook: config.notebook, question: config.question,
                  as: job.asGroup ? "group" : "team", explicit: job.explicit, changes: job.changes.map(function (change) {
                    const item = {team: change.team};
                    if (change.score !== undefined) { item.score = change.score; item.score_seen = seenVersion(job, change.team, "score"); }
                    if (change.comment !== undefined) { item.comment = change.comment; item.comment_seen = seenVersion(job, change.team, "comment"); }
                    return item;
                  })};
    let result = null, problem = null;
    try {
      const response = await fetch(config.api, {
        method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json", "X-XSRFToken": config.xsrf}, body: JSON.stringify(body)});
      if (response.ok) result = await response.json();
      else problem = response.status + " " + response.statusText + (response.status === 403 ? ": reload the page" : "");
    } catch (error) {
      problem = "the server is not reachable";
    }
    queue.shift();
    answeredSaves += 1;
    sending = false;
    if (result) saved(job, result);
    else failed(job, problem);
    renderAll();
    if (leaving === true) leave(false);
    pump();
  }

  function saved(job, result) {
    result.saved.forEach(function (state) { truth[state.team] = state; });
    result.conflicts.forEach(function (conflict) { truth[conflict.team] = conflict.theirs; });
    job.changes.forEach(function (change) {
      const state = truth[change.team];
      ["score", "comment"].forEach(function (field) {
        const refused = result.conflicts.some(function (item) { return item.team === change.team && item.field === field; });
        if (change[field] !== undefined && !refused) job.produced[change.team + "\u0000" + field] = state[field + "Version"];
      });
    });
    setProgress(result.graded, result.total);
    if (result.conflicts.length) {
      conflicts.push({job: job, items: result.conflicts});
      showConflicts(job.target);
      const written = result.saved.length;
      say(job.target, (written ? "saved for " + written + "; " : "") + "not saved where another TA saved meanwhile (below)", "error");
    } else if (!queued(job.target) && (job.target.state.textContent === "saving…" || !job.target.state.textContent)) {
      say(job.target, "saved", "saved");
    }
  }

  function failed(job, problem) {
    const target = job.target;
    // The value stays in its field (unless the TA typed or saved something newer there), ready for Enter again.
    if (target.edit.score === undefined && target.edit.comment === undefined && !queued(target)) {
      target.edit = {score: job.typed.score};
      if (job.typed.comment !== undefined) target.edit.comment = job.typed.comment;
    }
    target.failed = true;
    say(target, "not saved (" + problem + "): the value is kept, Enter saves it again", "error");
  }

  // ---- two TAs ----

  function describe(state, field) {
    if (field === "score") return state.manual === null ? "no score" : formatPoints(state.manual) + " points";
    return state.comment ? "comment “" + state.comment + "”" : "no comment";
  }

  function showConflicts(target) {
    const own = conflicts.filter(function (conflict) { return conflict.job.target === target; });
    const box = target.conflictBox;
    box.hidden = own.length === 0;
    box.textContent = "";
    own.forEach(function (conflict) {
      conflict.items.forEach(function (item) {
        const line = document.createElement("p");
        const mine = item.field === "score" ? formatPoints(item.mine) + " points" : (item.mine ? "comment “" + item.mine + "”" : "no comment");
        const alone = conflict.job.asGroup && !item.theirs.follows;
        line.textContent = item.team + (alone ? ": was graded alone meanwhile (" + describe(item.theirs, "score") + ", " +
          describe(item.theirs, "comment") + "); the group's " + mine + " did not go to it."
          : ": another TA saved " + describe(item.theirs, item.field) + " after you saw it; yours: " + mine + ".");
        box.appendChild(line);
      });
    });
    if (own.length) {
      const keys = document.createElement("p");
      keys.className = "keys";
      keys.textContent = "m keeps mine, t keeps theirs";
      box.appendChild(keys);
    }
  }

  function resolveConflict(keepMine) {
    const index = Math.max(0, conflicts.findIndex(function (conflict) { return conflict.job.target === targets[current]; }));
    const conflict = conflicts[index];
    if (!conflict) return;
    conflicts.splice(index, 1);
    const target = conflict.job.target;
    if (keepMine) {
      // Saved again over the value the TA was shown; if it changed once more since, that is a new conflict.
      conflict.items.forEach(function (item) {
        const change = {team: item.team, seenVersion: item.theirs[item.field + "Version"]};
        change[item.field] = item.mine;
        // Keeping mine is on purpose: also for a team graded alone meanwhile.
        enqueue(target, conflict.job.asGroup, [change], conflict.job.typed, true);
      });
      say(target, "saving…");
    } else {
      say(target, "kept the other TA's grade", "saved");
    }
    showConflicts(target);
    renderAll();
  }

  async function poll() {
    const before = answeredSaves;
    try {
      const url = config.api + "?" + new URLSearchParams({assignment: config.assignment, notebook: config.notebook,
                                                          question: config.question});
      const response = await fetch(url, {credentials: "same-origin", cache: "no-store"});
      if (response.ok) {
        const result = await response.json();
        // A save answered meanwhile is newer than what this poll read.
        if (before === answeredSaves && !sending) {
          Object.keys(result.teams).forEach(function (team) {
            const now = result.teams[team], old = truth[team];
            if (old && (now.scoreVersion !== old.scoreVersion || now.commentVersion !== old.commentVersion ||
                        now.follows !== old.follows || now.graded !== old.graded)) {
              truth[team] = now;
              noteChangedElsewhere(team, now);
            }
          });
          setProgress(result.graded, result.total);
          renderAll();
        }
      }
    } catch (error) {
      // The next poll tries again; saves report their own failures.
    }
    setTimeout(poll, config.pollSeconds * 1000);
  }

  function noteChangedElsewhere(team, state) {
    targets.forEach(function (target) {
      if (target.teams.indexOf(team) < 0) return;
      const editing = target.edit.score !== undefined || target.edit.comment !== undefined;
      if (editing) say(target, team + " was just graded by another TA (" + describe(state, "score") + "); Enter shows both", "error");
    });
  }

  // ---- a team graded alone gets its group's grade only when the TA says so ----

  function giveGroupGrade() {
    const target = targets[current];
    if (target.kind !== "team") { say(target, "g works on a team inside a group", "error"); return; }
    const group = target.group;
    const read = readScore(group);
    if (read.error || read.score === null) { say(target, "the group has no points yet", "error"); return; }
    const team = target.teams[0];
    const state = view(team);
    const comment = group.edit.comment !== undefined ? group.edit.comment : shownComment(group);
    const change = {team: team};
    if (!state.graded || state.score !== read.score) change.score = read.score;
    if (state.comment !== comment) change.comment = comment;
    if (change.score === undefined && change.comment === undefined) {
      // Same values already: saving them as the group's makes the team follow it again.
      change.comment = comment;
    }
    enqueue(target, true, [change], {score: String(read.score), comment: comment}, true);
    target.edit = {};
    target.failed = false;
    say(target, "saving…");
    renderAll();
  }

  // ---- keys ----

  // n: the next question, once every save here is answered; with saves refused or failed, only on a second n.
  let leaveConfirmed = false;
  function leave(byKey) {
    const link = document.getElementById("next-question");
    if (!link) return;
    if (queue.length) { leaving = true; savesNote.textContent = "saving " + queue.length + "…, then the next question"; return; }
    const unsaved = conflicts.length + targets.filter(function (target) { return target.failed; }).length;
    if (unsaved && !(byKey && leaving === "confirm")) {
      leaving = "confirm";
      savesNote.textContent = unsaved + " not saved (marked): n again leaves anyway";
      return;
    }
    leaveConfirmed = true;
    window.location.href = link.href;
  }

  targets.forEach(function (target) {
    target.element.addEventListener("click", function () { select(target.index); });
    target.score.addEventListener("input", function () { target.edit.score = target.score.value; say(target, "not saved yet"); });
    target.comment.addEventListener("input", function () { target.edit.comment = target.comment.value; say(target, "not saved yet"); });
  });

  document.addEventListener("keydown", function (event) {
    if (current < 0 || (event.ctrlKey && event.key !== "Enter") || event.altKey || event.metaKey) return;
    const target = targets[current];
    const typing = event.target.tagName === "TEXTAREA" || event.target.tagName === "INPUT";
    if (event.key === "Escape") { if (event.target.blur) event.target.blur(); return; }
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      if (typing) event.target.blur();
      saveAndAdvance();
      return;
    }
    if (typing) return;
    if (/^[0-9]$/.test(event.key)) {
      event.preventDefault();
      if (Number(event.key) <= config.max) { target.edit.score = event.key; render(target); say(target, "not saved yet"); }
      else say(target, "points are 0 to " + formatPoints(config.max), "error");
    } else if (event.key === "+" || event.key === "-") {
      event.preventDefault();
      const base = Number((target.edit.score !== undefined ? target.edit.score : shownScore(target)) || 0);
      const value = Math.min(config.max, Math.max(0, base + (event.key === "+" ? 0.5 : -0.5)));
      target.edit.score = formatPoints(value);
      render(target);
      say(target, "not saved yet");
    } else if (event.key === "Backspace" || event.key === "Delete") {
      event.preventDefault();
      target.edit.score = "";
      render(target);
      say(target, "no points: Enter saves nothing");
    } else if (event.key === "c") {
      event.preventDefault();
      target.comment.focus();
    } else if (event.key === "j" || event.key === "ArrowDown") {
      event.preventDefault();
      select(current + 1);
    } else if (event.key === "k" || event.key === "ArrowUp") {
      event.preventDefault();
      select(current - 1);
    } else if (event.key === "g") {
      event.preventDefault();
      giveGroupGrade();
    } else if (event.key === "m" || event.key === "t") {
      event.preventDefault();
      resolveConflict(event.key === "m");
    } else if (event.key === "n") {
      event.preventDefault();
      leave(true);
    }
  });

  document.addEventListener("focusin", function (event) {
    const target = targets.find(function (item) { return item.element.contains(event.target); });
    if (target && target.index !== current) select(target.index);
  });

  window.addEventListener("beforeunload", function (event) {
    const unsaved = targets.some(function (target) {
      return target.failed || target.edit.score !== undefined || target.edit.comment !== undefined;
    });
    if (!leaveConfirmed && (queue.length || conflicts.length || unsaved)) {
      event.preventDefault();
      event.returnValue = "";
    }
  });

  renderAll();
  const first = nextUngraded(targets.length - 1);
  select(first >= 0 ? first : 0);
  setTimeout(poll, config.pollSeconds * 1000);
})();
