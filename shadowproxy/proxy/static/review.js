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
  const state = {tag: undefined, item: null, busy: false, tags: [], retry: null, open: {}};

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // Markdown as a chat window shows it: fenced code, headings, lists, quotes, **bold**,
  // *italic*, `code`, links as their text and address. Built from DOM nodes only: raw
  // HTML in an answer shows as the characters it is.
  const FENCE = /^\s*(```|~~~)\s*([\w+.#-]*)\s*$/;
  const LIST = /^(\s*)([-*+]|\d{1,3}[.)])\s+(.*)$/;
  const INLINE = /(`[^`\n]+`)|(\*\*[^*\n]+\*\*|__[^_\n]+__)|(\*[^*\s][^*\n]*\*|\b_[^_\n]+_\b)|(\[[^\]\n]+\]\([^)\s]+\))/g;

  function inline(text, into) {
    let last = 0;
    for (const match of text.matchAll(INLINE)) {
      if (match.index > last) into.append(document.createTextNode(text.slice(last, match.index)));
      const token = match[0];
      if (match[1]) into.append(el("code", null, token.slice(1, -1)));
      else if (match[2]) into.append(el("strong", null, token.slice(2, -2)));
      else if (match[3]) into.append(el("em", null, token.slice(1, -1)));
      else {
        const close = token.indexOf("](");
        into.append(el("span", "md-link", token.slice(1, close)));
        into.append(el("span", "md-url", " (" + token.slice(close + 2, -1) + ")"));
      }
      last = match.index + token.length;
    }
    if (last < text.length) into.append(document.createTextNode(text.slice(last)));
  }

  function renderText(text, into) {
    const lines = text.replace(/\r\n?/g, "\n").split("\n");
    let i = 0;
    const startsBlock = (line) => FENCE.test(line) || LIST.test(line) || /^#{1,6}\s/.test(line)
      || /^\s*>/.test(line);
    while (i < lines.length) {
      const line = lines[i];
      const fence = line.match(FENCE);
      if (fence) {
        const body = [];
        i += 1;
        while (i < lines.length && !lines[i].trim().startsWith(fence[1])) body.push(lines[i++]);
        i += 1;
        const pre = el("pre", "code");
        if (fence[2]) pre.dataset.lang = fence[2];
        pre.append(el("code", null, body.join("\n")));
        into.append(pre);
      } else if (!line.trim()) {
        i += 1;
      } else if (/^#{1,6}\s/.test(line)) {
        const level = line.match(/^#+/)[0].length;
        const heading = el("div", "md-h md-h" + Math.min(level, 3));
        inline(line.replace(/^#+\s+/, ""), heading);
        into.append(heading);
        i += 1;
      } else if (LIST.test(line)) {
        const ordered = /\d/.test(line.match(LIST)[2]);
        const list = el(ordered ? "ol" : "ul", "md-list");
        while (i < lines.length && (LIST.test(lines[i])
               || (lines[i].startsWith("  ") && lines[i].trim() && list.lastChild))) {
          const item = lines[i].match(LIST);
          if (item) {
            const li = el("li");
            if (item[1].length >= 2) li.className = "md-nested";
            if (ordered) li.value = parseInt(item[2], 10);
            inline(item[3], li);
            list.append(li);
          } else {
            list.lastChild.append(document.createTextNode("\n" + lines[i].trim()));
          }
          i += 1;
        }
        into.append(list);
      } else if (/^\s*>/.test(line)) {
        const quoted = [];
        while (i < lines.length && /^\s*>/.test(lines[i])) {
          quoted.push(lines[i++].replace(/^\s*>\s?/, ""));
        }
        const quote = el("blockquote");
        renderText(quoted.join("\n"), quote);
        into.append(quote);
      } else {
        const para = [];
        while (i < lines.length && lines[i].trim() && (!para.length || !startsBlock(lines[i]))) {
          para.push(lines[i++]);
        }
        const p = el("div", "text");
        inline(para.join("\n"), p);
        into.append(p);
      }
    }
  }

  function pretty(text) {
    const trimmed = text.trim();
    if (!/^[[{]/.test(trimmed)) return text;
    try { return JSON.stringify(JSON.parse(trimmed), null, 2); } catch (e) { return text; }
  }

  function argumentsText(value) {
    return typeof value === "string" ? pretty(value) : JSON.stringify(value, null, 2);
  }

  function toolBox(kind, title, body, error) {
    const box = el("div", "tool " + kind + (error ? " error" : ""));
    if (title) box.append(el("div", "tool-title", title));
    box.append(el("pre", null, body));
    return box;
  }

  function renderTurn(turn) {
    const box = el("section", "turn role-" + turn.role);
    const errored = turn.parts.some((p) => p.error);
    box.append(el("div", "role", (ROLE_NAMES[turn.role] || turn.role)
      + (errored ? " (error)" : "")));
    turn.parts.forEach((part) => {
      if (part.kind === "text") renderText(part.text, box);
      else if (part.kind === "tool_call") {
        box.append(toolBox("call", "Tool call · " + part.name, part.text));
      } else if (part.kind === "tool_result") {
        box.append(toolBox("result", null, pretty(part.text), part.error));
      } else box.append(el("span", "placeholder", part.text));
    });
    return box;
  }

  // A fold that stays as the reviewer left it from one item to the next.
  function fold(key, summary, preview, children) {
    const details = el("details", "fold");
    details.open = Boolean(state.open[key]);
    const head = el("summary", null, summary);
    if (preview) head.append(el("span", "preview", preview));
    details.append(head, ...children);
    details.addEventListener("toggle", () => { state.open[key] = details.open; });
    return details;
  }

  // The system prompt and the earlier turns folded; the last user turn and what follows
  // it (the question the two answers reply to) open.
  function renderTurns(turns) {
    const root = $("conversation");
    root.replaceChildren();
    if (!turns.length) {
      root.append(el("p", "muted", "No conversation was stored for this pair."));
      return;
    }
    let start = 0;
    if (turns[0].role === "system") {
      const text = turns[0].parts.map((p) => p.text).join(" ");
      const preview = text.length > 160 ? text.slice(0, 160) + "…" : text;
      const body = renderTurn(turns[0]);
      body.firstChild.remove();
      root.append(fold("system", "System prompt", preview, [body]));
      start = 1;
    }
    let last = turns.length - 1;
    while (last > start && turns[last].role !== "user") last -= 1;
    const earlier = turns.slice(start, last);
    if (earlier.length) {
      const word = earlier.length === 1 ? "1 earlier turn" : earlier.length + " earlier turns";
      root.append(fold("earlier", "Earlier in the conversation: " + word, null,
                       earlier.map(renderTurn)));
    }
    turns.slice(last).forEach((turn) => root.append(renderTurn(turn)));
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
      const bar = el("span", "meter");
      bar.setAttribute("role", "progressbar");
      bar.setAttribute("aria-valuemin", "0");
      bar.setAttribute("aria-valuemax", String(t.labels_needed));
      bar.setAttribute("aria-valuenow", String(t.labelled_pairs));
      const share = t.labels_needed ? Math.min(1, t.labelled_pairs / t.labels_needed) : 1;
      const fill = el("span", "fill");
      fill.style.width = (share * 100).toFixed(1) + "%";
      bar.append(fill);
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
