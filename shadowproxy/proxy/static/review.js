// The review page: fetch an item, show it, send the label, repeat.
// Every model-written string goes in with textContent: nothing here parses HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const csrf = document.querySelector('meta[name="csrf-token"]').content || "loopback";
  const ROLE_NAMES = {system: "System prompt", user: "User", assistant: "Assistant",
                      tool: "Tool result"};
  const CHOICE_NAMES = {"1": "Answer 1 is better", "2": "Answer 2 is better",
                        tie: "Equally good", skip: "Skipped"};
  const state = {tag: undefined, item: null, busy: false, tags: [], retry: null};

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // Text with ``` fenced blocks as <pre>, `inline code` as <code>, line breaks kept.
  function renderText(text, into) {
    const pieces = text.split(/```/);
    pieces.forEach((piece, i) => {
      if (i % 2 === 1) {
        const newline = piece.indexOf("\n");
        const lang = newline > 0 ? piece.slice(0, newline).trim() : "";
        const body = newline >= 0 && /^[\w+.#-]*$/.test(lang) ? piece.slice(newline + 1) : piece;
        const pre = el("pre", "code");
        if (lang && /^[\w+.#-]+$/.test(lang)) pre.dataset.lang = lang;
        pre.append(el("code", null, body.replace(/\n$/, "")));
        into.append(pre);
        return;
      }
      if (!piece) return;
      const para = el("div", "text");
      piece.split(/(`[^`\n]+`)/).forEach((bit) => {
        if (bit.length > 2 && bit.startsWith("`") && bit.endsWith("`")) {
          para.append(el("code", null, bit.slice(1, -1)));
        } else if (bit) {
          para.append(document.createTextNode(bit));
        }
      });
      into.append(para);
    });
  }

  function argumentsText(value) {
    if (typeof value === "string") {
      try { return JSON.stringify(JSON.parse(value), null, 2); } catch (e) { return value; }
    }
    return JSON.stringify(value, null, 2);
  }

  function toolBox(kind, title, body, error) {
    const box = el("div", "tool " + kind + (error ? " error" : ""));
    box.append(el("div", "tool-title", title));
    box.append(el("pre", null, body));
    return box;
  }

  function renderTurns(turns) {
    const root = $("conversation");
    root.replaceChildren();
    if (!turns.length) root.append(el("p", "muted", "No conversation was stored for this pair."));
    turns.forEach((turn) => {
      const box = el("section", "turn role-" + turn.role);
      box.append(el("div", "role", ROLE_NAMES[turn.role] || turn.role));
      turn.parts.forEach((part) => {
        if (part.kind === "text") renderText(part.text, box);
        else if (part.kind === "tool_call") {
          box.append(toolBox("call", "Tool call · " + part.name, part.text));
        } else if (part.kind === "tool_result") {
          box.append(toolBox("result", part.error ? "Tool result (error)" : "Tool result",
                             part.text, part.error));
        } else box.append(el("span", "placeholder", part.text));
      });
      root.append(box);
    });
    if (turns.length > 3) {
      const last = root.lastElementChild;
      root.scrollTop = Math.max(0, last.offsetTop - root.offsetTop - 8);
    }
  }

  function renderAnswer(answer, into) {
    into.replaceChildren();
    if (answer.text) renderText(answer.text, into);
    answer.tool_calls.forEach((call) => {
      into.append(toolBox("call", "Tool call · " + call.name, argumentsText(call.arguments)));
    });
    if (!answer.text && !answer.tool_calls.length) into.append(el("p", "muted", "(empty answer)"));
  }

  function tagName(tag) { return tag === null ? "(untagged)" : tag; }

  function renderTags() {
    const list = $("tags");
    list.replaceChildren();
    if (!state.tags.length) {
      list.append(el("li", "muted", "No judged pairs yet: run shadowproxy diff with a judge."));
      return;
    }
    state.tags.forEach((t) => {
      const li = el("li");
      const button = el("button", "tag" + (t.tag === state.tag ? " current" : ""));
      button.type = "button";
      button.setAttribute("aria-pressed", String(t.tag === state.tag));
      button.append(el("span", "tag-name", tagName(t.tag)));
      const bar = el("progress");
      bar.max = Math.max(1, t.labels_needed);
      bar.value = Math.min(t.labelled_pairs, bar.max);
      button.append(bar);
      const counts = t.labelled_pairs + " of " + t.labels_needed + " labels";
      button.append(el("span", "tag-counts", counts + (t.skips ? " · " + t.skips + " skipped" : "")
        + (t.mine ? " · " + t.mine + " yours" : "")));
      button.addEventListener("click", () => chooseTag(t.tag));
      li.append(button);
      list.append(li);
    });
  }

  function status(text) { $("status").textContent = text; }

  function showError(text) {
    const node = $("error");
    node.textContent = text;
    node.hidden = !text;
  }

  function signIn() {
    const back = "/review" + (state.tag === undefined || state.tag === null ? ""
      : "?tag=" + encodeURIComponent(state.tag));
    window.location.assign("/login?next=" + encodeURIComponent(back));
  }

  async function refreshProgress() {
    const resp = await fetch("/api/review/progress", {credentials: "same-origin"});
    if (resp.status === 401) return signIn();
    if (!resp.ok) return;
    state.tags = (await resp.json()).tags;
    if (state.tag === undefined) {
      const wanted = new URLSearchParams(window.location.search).get("tag");
      const open = (wanted !== null && state.tags.find((t) => t.tag === wanted))
        || state.tags.find((t) => t.labelled_pairs < t.labels_needed) || state.tags[0];
      state.tag = open ? open.tag : null;
    }
    renderTags();
  }

  function chooseTag(tag) {
    if (state.busy || tag === state.tag) return;
    state.tag = tag;
    const url = new URL(window.location.href);
    if (tag === null) url.searchParams.delete("tag"); else url.searchParams.set("tag", tag);
    window.history.replaceState(null, "", url);
    renderTags();
    loadNext();
  }

  function setBusy(busy) {
    state.busy = busy;
    document.querySelectorAll("#choose button").forEach((b) => { b.disabled = busy; });
  }

  async function loadNext() {
    setBusy(true);
    showError("");
    try {
      const query = state.tag === null ? "" : "?tag=" + encodeURIComponent(state.tag);
      const resp = await fetch("/api/review/next" + query, {credentials: "same-origin"});
      if (resp.status === 401) return signIn();
      if (resp.status === 204) {
        state.item = null;
        $("item").hidden = true;
        $("choose").hidden = true;
        const done = $("done");
        done.hidden = false;
        done.replaceChildren(el("h2", null, "Nothing left to label in " + tagName(state.tag)),
          el("p", null, "Every pair of this use case is labelled, skipped by you, or being "
            + "labelled by someone else. Pick another use case on the left, or come back "
            + "when more pairs have been judged."));
        status("");
        return;
      }
      if (!resp.ok) {
        status("Could not load the next pair (the server said " + resp.status + "). "
          + "Retrying in 5 s.");
        window.setTimeout(loadNext, 5000);
        return;
      }
      const item = await resp.json();
      state.item = item.item;
      $("done").hidden = true;
      $("item").hidden = false;
      $("choose").hidden = false;
      renderTurns(item.turns);
      renderAnswer(item.answers[0], $("answer1"));
      renderAnswer(item.answers[1], $("answer2"));
      window.scrollTo(0, 0);
    } finally {
      setBusy(false);
    }
  }

  async function send(choice) {
    if (state.busy || !state.item) return;
    setBusy(true);
    showError("");
    const item = state.item;
    const note = $("note").value;
    let advance = false;
    try {
      const resp = await fetch("/api/review/" + encodeURIComponent(item), {
        method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
        body: JSON.stringify({choice, note: note || null}),
      });
      const answer = resp.status === 201 ? null : await resp.json().catch(() => ({}));
      if (resp.status === 201) {
        status("Saved: " + CHOICE_NAMES[choice] + ".");
        $("note").value = "";
        advance = true;
      } else if (resp.status === 409 || resp.status === 404) {
        status(answer.error || "That pair is no longer yours to label.");
        $("note").value = "";
        advance = true;
      } else if (resp.status === 429) {
        const wait = Number(resp.headers.get("Retry-After") || "5");
        status("Saving too fast: your label (" + CHOICE_NAMES[choice] + ") is kept and "
          + "will be sent in " + wait + " s.");
        state.retry = window.setTimeout(() => {
          state.retry = null;
          setBusy(false);
          send(choice);
        }, wait * 1000);
        return;
      } else if (resp.status === 401) {
        return signIn();
      } else if (resp.status === 400 || resp.status === 413) {
        showError(answer.error || "The server refused this label.");
      } else {
        showError("Could not save (the server said " + resp.status + "); your label is "
          + "still here: press the key again.");
      }
    } catch (e) {
      showError("Could not reach the server; your label is still here: press the key again.");
    } finally {
      if (state.retry === null) setBusy(false);
    }
    if (advance) {
      await Promise.all([refreshProgress(), loadNext()]);
    }
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
    const target = event.target;
    if (target instanceof HTMLTextAreaElement || target instanceof HTMLInputElement
        || target instanceof HTMLSelectElement) {
      if (event.key === "Escape") target.blur();
      return;
    }
    const choice = {"1": "1", "2": "2", t: "tie", T: "tie", s: "skip", S: "skip"}[event.key];
    if (choice && $("choose").hidden === false) {
      event.preventDefault();
      send(choice);
    } else if (event.key === "n" && $("choose").hidden === false) {
      event.preventDefault();
      $("note").focus();
    }
  });

  document.querySelectorAll("#choose button[data-choice]").forEach((button) => {
    button.addEventListener("click", () => send(button.dataset.choice));
  });

  refreshProgress().then(loadNext);
})();
