// webhook-relay console: small progressive enhancements. Every page works without this file.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // Schema page: a copy button beside each Handlebars path.
  for (const button of document.querySelectorAll("button.copy[data-copy]")) {
    button.hidden = false;
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(button.dataset.copy);
        button.textContent = "copied";
      } catch (_) {
        button.textContent = "select and copy";
      }
      setTimeout(() => { button.textContent = "copy"; }, 1500);
    });
  }

  // Dead letters: a "select all on this page" box, and the "selected" buttons only when
  // something is selected.
  const all = document.getElementById("select-all");
  const picks = Array.from(document.querySelectorAll("input.pick"));
  const selectedButtons = ["replay-selected", "purge-selected"]
    .map((id) => document.getElementById(id))
    .filter(Boolean);
  const update = () => {
    const any = picks.some((p) => p.checked);
    for (const b of selectedButtons) b.disabled = !any;
    if (all) all.checked = picks.length > 0 && picks.every((p) => p.checked);
  };
  if (all) {
    all.hidden = false;
    all.addEventListener("change", () => {
      for (const p of picks) p.checked = all.checked;
      update();
    });
  }
  for (const p of picks) p.addEventListener("change", update);
  if (picks.length) update();
});
